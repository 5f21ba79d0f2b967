"""A Dockerfile read as the builder reads it: instructions (continuations joined, comments
dropped), stages with their names, build arguments with their defaults, and exec-form
arguments decoded."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_FLAG = re.compile(r"--([a-z-]+)=(\S+)")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form CMD/ENTRYPOINT (or HEALTHCHECK ... CMD)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--[a-z-]+=\S+\s+)*CMD\s+", "", text)
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"line {self.line}: not exec form"
        return value

    def flags(self) -> dict[str, str]:
        """--name=value options in front of the arguments (HEALTHCHECK, COPY)."""
        head = self.args.split(" CMD ", 1)[0] if self.keyword == "HEALTHCHECK" else self.args
        return dict(_FLAG.findall(head))


@dataclass
class Stage:
    name: str
    base: str  # the FROM argument, build arguments substituted
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise AssertionError(f"no stage {name!r}: {[s.name for s in self.stages]}")

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        out = [self.stage(name)]
        names = {s.name for s in self.stages}
        while out[-1].base in names:
            out.append(self.stage(out[-1].base))
        return out

    def effective(self, name: str, keyword: str) -> Instruction | None:
        """What a stage's image ends up with for a keyword set once (CMD, USER, HEALTHCHECK)."""
        for s in self.chain(name):
            found = s.last(keyword)
            if found is not None:
                return found
        return None

    def labels(self, name: str) -> dict[str, str]:
        """Every LABEL along the chain, later ones winning, build arguments substituted."""
        labels: dict[str, str] = {}
        for s in reversed(self.chain(name)):
            args = dict(self.global_args)
            for ins in s.instructions:
                if ins.keyword == "ARG":
                    key, _, default = ins.args.partition("=")
                    args[key] = default if default else self.global_args.get(key, "")
                if ins.keyword == "LABEL":
                    for pair in shlex.split(ins.args):
                        key, _, value = pair.partition("=")
                        labels[key] = substitute(value, args)
        return labels


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments, also inside a continuation, as the builder drops them
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the file ends inside a continuation"
    return out


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            words = ins.args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"line {ins.line}: every stage is named"
            stages.append(Stage(words[2], substitute(words[0], global_args)))
        elif not stages:
            assert ins.keyword == "ARG", f"line {ins.line}: only ARG comes before the first FROM"
            key, _, default = ins.args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(ins)
    return Dockerfile(global_args, stages)
