"""Repository globs as zot matches them (bmatcuk/doublestar v4's `Match`), compiled once.

zot names repositories in its config by doublestar globs (`accessControl.repositories`,
retention's `repositories`), so a config written for zot must select the same
repositories here:

- `*` is any run of characters within one path component, `?` one such character;
- `**` as a whole component is zero or more components: `a/**` matches `a`, `a/b` and
  `a/b/c`; `**/b` matches `b` and `x/y/b`; elsewhere (`a**`) it is a single `*`;
- `[abc]`, `[a-z]`, `[!a]` / `[^a]` classes, `{x,y}` alternatives (nested, and each
  alternative may hold any of the above), `\\` escapes the next character.

Braces are expanded first, as doublestar does (it substitutes each alternative into the
pattern), then each brace-free pattern becomes one regular expression.  A pattern that
doublestar's `ValidatePattern` refuses (an unclosed class or brace, an empty class, a
trailing backslash) raises `ValueError`, so it fails when the config is read.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Brace expansion multiplies alternatives; a config pattern that expands past this is a mistake.
_MAX_ALTERNATIVES = 1024


class Glob:
    """One compiled pattern; `matches(name)` is doublestar's `Match(pattern, name)`."""

    __slots__ = ("_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        alternatives = _expand(pattern)
        self._regex = re.compile("|".join(f"(?:{_translate(p)})" for p in alternatives), re.DOTALL)

    def matches(self, name: str) -> bool:
        return self._regex.fullmatch(name) is not None

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Glob:
    """The compiled pattern (cached: config patterns are few and used on every request)."""
    return Glob(pattern)


def check_glob(pattern: str) -> str:
    """`pattern` itself if doublestar would accept it; ValueError naming the problem otherwise."""
    if not pattern:
        raise ValueError("an empty glob matches nothing")
    try:
        compile_glob(pattern)
    except ValueError as exc:
        raise ValueError(f"{pattern!r} is no valid glob: {exc}") from None
    return pattern


def _closing(pattern: str, start: int, close: str) -> int:
    """Index of the `close` that ends the group opened just before `start` (escapes and
    nested braces skipped), or -1."""
    depth = 0
    i = start
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if close == "}" and ch == "{":
            depth += 1
        elif ch == close:
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _split_alternatives(body: str) -> list[str]:
    """The top-level comma-separated parts of a brace group's body."""
    parts: list[str] = []
    depth, i, start = 0, 0, 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return parts


def _expand(pattern: str) -> list[str]:
    """Every brace-free pattern the braces of `pattern` stand for."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            end = _class_end(pattern, i)
            i = end + 1
            continue
        if ch == "{":
            end = _closing(pattern, i + 1, "}")
            if end < 0:
                raise ValueError("a '{' is never closed")
            head, tail = pattern[:i], pattern[end + 1:]
            out: list[str] = []
            for alternative in _split_alternatives(pattern[i + 1:end]):
                out.extend(_expand(head + alternative + tail))
                if len(out) > _MAX_ALTERNATIVES:
                    raise ValueError(f"braces expand to more than {_MAX_ALTERNATIVES} patterns")
            return out
        i += 1
    return [pattern]


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the class that opens at `start`."""
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i >= len(pattern) or pattern[i] == "]":
        raise ValueError("a character class is empty or never closed")
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    raise ValueError("a '[' is never closed")


def _class_regex(body: str) -> str:
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(re.escape(body[i + 1]))
            i += 2
            continue
        # A dash between two characters is a range, anywhere else a dash.
        out.append("-" if ch == "-" and out and i + 1 < len(body) else re.escape(ch))
        i += 1
    return "[" + ("^" if negate else "") + "".join(out) + "]"


def _translate(pattern: str) -> str:
    """A brace-free pattern as a regular expression matched against the whole name."""
    out: list[str] = []
    i, n = 0, len(pattern)
    segment_start = True
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*" and segment_start:
                after = i + 2
                if after == n:
                    # A trailing `/**` also matches the directory itself: `a/**` matches `a`.
                    if out and out[-1] == "/":
                        out[-1] = "(?:/.*)?"
                    else:
                        out.append(".*")
                    i = after
                    continue
                if pattern[after] == "/":
                    out.append("(?:[^/]*/)*")  # zero or more whole components
                    i = after + 1
                    segment_start = True
                    continue
                i = after  # `**x`: a single star, as bash's globstar
            else:
                i += 1
            out.append("[^/]*")
            segment_start = False
        elif ch == "?":
            out.append("[^/]")
            i += 1
            segment_start = False
        elif ch == "[":
            end = _class_end(pattern, i)
            out.append(_class_regex(pattern[i + 1:end]))
            i = end + 1
            segment_start = False
        elif ch == "\\":
            if i + 1 >= n:
                raise ValueError("the pattern ends in a lone backslash")
            out.append(re.escape(pattern[i + 1]))
            segment_start = pattern[i + 1] == "/"
            i += 2
        elif ch == "/":
            out.append("/")
            i += 1
            segment_start = True
        else:
            out.append(re.escape(ch))
            i += 1
            segment_start = False
    return "".join(out)


def glob_match(pattern: str, name: str) -> bool:
    return compile_glob(pattern).matches(name)
