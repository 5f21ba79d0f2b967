"""The scrub report: what a pass found, kept in one JSON document every process reads.

It is written through the store's driver at `REPORT_PATH`, outside every layout (a name
starting with `.` is never a repository), so the CLI, the API, the web page and the worker
read the same report whatever the backend; it also carries the cursor that lets a killed
pass resume rather than restart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from . import jsondoc
from .registry.store import Store
from .storage import PathNotFound

log = logging.getLogger("ocistore.scrub")

REPORT_PATH = ".ocistore/scrub-report.json"
REPORT_VERSION = 1
MAX_REPORT_BYTES = 256 << 20
FindingKey = tuple[str, str, str]


class Problem(StrEnum):
    DIGEST_MISMATCH = "digest_mismatch"  # the bytes hash to something other than the file's name
    MISSING_BLOB = "missing_blob"  # a listed manifest, a child or a referenced blob is absent
    SIZE_MISMATCH = "size_mismatch"  # the file's size differs from its descriptor's
    UNREADABLE_BLOB = "unreadable_blob"  # the driver failed reading the file (an I/O error)
    UNREADABLE_MANIFEST = "unreadable_manifest"  # a listed manifest does not parse
    STRAY_TEMPORARY = "stray_temporary_file"  # a killed writer's `*.tmp-*`, older than gcDelay (GC's to collect)
    CORRUPT_INDEX = "corrupt_index"  # index.json is missing, not JSON, or lists a bad descriptor


@dataclass(frozen=True)
class Finding:
    """One problem of one repository; `digest` is empty when it is index.json itself."""

    repo: str
    digest: str
    problem: str
    detail: str
    first_seen: float
    last_checked: float

    @property
    def key(self) -> FindingKey:
        """What makes a finding "the same" from one pass to the next."""
        return (self.repo, self.digest, self.problem)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Finding:
        return cls(str(doc["repo"]), str(doc["digest"]), str(doc["problem"]), str(doc["detail"]),
                   float(doc["first_seen"]), float(doc["last_checked"]))


@dataclass
class ScrubReport:
    """Current findings and running totals, as persisted between passes and processes."""

    findings: dict[FindingKey, Finding] = field(default_factory=dict)
    passes: int = 0
    blobs_checked: int = 0
    bytes_hashed: int = 0
    problems_found: int = 0
    last_pass_start: float | None = None
    last_pass_end: float | None = None
    last_pass_seconds: float | None = None
    # The full pass under way (or killed): when it began, the last repository it finished and
    # how long it has run, so that the next run completes it instead of starting over.
    pass_start: float | None = None
    pass_cursor: str | None = None
    pass_seconds: float = 0.0

    def settle(self, repo: str, found: Iterable[Finding]) -> tuple[list[Finding], list[Finding]]:
        """Make `found` the findings of `repo` after a full look at it; returns (new, resolved).

        A problem seen before keeps its `first_seen`; one not seen again is resolved.  When a
        pass observes one problem twice, its first observation stands.
        """
        before = {k: f for k, f in self.findings.items() if f.repo == repo}
        for key in before:
            del self.findings[key]
        new: list[Finding] = []
        for finding in found:
            if finding.key in self.findings:
                continue
            old = before.pop(finding.key, None)
            if old is None:
                new.append(finding)
            else:
                finding = replace(finding, first_seen=old.first_seen)
            self.findings[finding.key] = finding
        self.problems_found += len(new)
        return new, list(before.values())

    def forget_all_but(self, repos: set[str]) -> None:
        """Drop the findings of repositories that no longer exist."""
        self.findings = {k: f for k, f in self.findings.items() if f.repo in repos}

    def begin_pass(self, now: float) -> None:
        """Start a full pass, unless a killed one is waiting to be completed."""
        if self.pass_start is None:
            self.pass_start, self.pass_cursor, self.pass_seconds = now, None, 0.0

    def finish_pass(self, now: float) -> None:
        self.passes += 1
        self.last_pass_start, self.last_pass_end, self.last_pass_seconds = self.pass_start, now, self.pass_seconds
        self.pass_start, self.pass_cursor, self.pass_seconds = None, None, 0.0

    def to_json(self) -> dict[str, Any]:
        totals = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "findings"}
        findings = [asdict(f) for _, f in sorted(self.findings.items())]
        return {"version": REPORT_VERSION, **totals, "findings": findings}

    @classmethod
    def from_json(cls, doc: Any) -> ScrubReport:
        if not isinstance(doc, dict) or not isinstance(doc.get("findings", []), list):
            raise ValueError("not a scrub report")
        findings = [Finding.from_json(f) for f in doc.get("findings", [])]
        return cls(
            findings={f.key: f for f in findings},
            passes=int(doc.get("passes", 0)),
            blobs_checked=int(doc.get("blobs_checked", 0)),
            bytes_hashed=int(doc.get("bytes_hashed", 0)),
            problems_found=int(doc.get("problems_found", 0)),
            last_pass_start=_optional_float(doc.get("last_pass_start")),
            last_pass_end=_optional_float(doc.get("last_pass_end")),
            last_pass_seconds=_optional_float(doc.get("last_pass_seconds")),
            pass_start=_optional_float(doc.get("pass_start")),
            pass_cursor=None if doc.get("pass_cursor") is None else str(doc["pass_cursor"]),
            pass_seconds=float(doc.get("pass_seconds", 0.0)),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


async def load_report(store: Store) -> ScrubReport:
    """The stored report; an empty one when there is none yet or it cannot be read.

    An unreadable report must not stop scrubbing forever: it is replaced at the next save.
    """
    try:
        data = await store.driver.get_content(REPORT_PATH)
    except PathNotFound:
        return ScrubReport()
    try:
        return ScrubReport.from_json(jsondoc.loads(data, max_bytes=MAX_REPORT_BYTES))
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("scrub report %s is unreadable (%s); starting a new one", REPORT_PATH, exc)
        return ScrubReport()


async def save_report(store: Store, report: ScrubReport) -> None:
    await store.driver.put_content(REPORT_PATH, json.dumps(report.to_json(), indent=1).encode())



def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_rows(report: ScrubReport, repo: str | None = None) -> list[dict[str, str]]:
    """The findings (of `repo` only, if given) as flat rows (times in ISO 8601 UTC), ordered by
    repository and digest."""
    return [
        {"repository": f.repo, "digest": f.digest, "problem": f.problem, "detail": f.detail,
         "first_seen": _iso(f.first_seen), "last_checked": _iso(f.last_checked)}
        for _, f in sorted(report.findings.items()) if repo is None or f.repo == repo
    ]
