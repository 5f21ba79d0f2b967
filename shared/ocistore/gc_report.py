"""What a GC pass removed from one repository (`GCReport`) and from many (`GCTotals`).

Apart from the pass itself (gc.py) because the report has readers the pass does not: the
history of passes (gc_history.py), the CLI's output and the web page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .retention import Decision


@dataclass
class GCReport:
    repo: str
    manifests: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    # Logical bytes of what was removed (or would be), and the physical bytes that freed: a
    # blob another repository still links or references frees nothing.
    bytes_freed: int = 0
    physical_bytes_freed: int = 0
    # Unreferenced blobs kept because they are younger than gcDelay (a push may still need them).
    held_back_bytes: int = 0
    dry_run: bool = False
    # Nothing was left (no manifest, blob or upload), so the repository itself went.
    emptied: bool = False
    # Kept manifests whose stored bytes do not parse: their references are unknown, so
    # no manifest or blob was collected.
    unreadable: list[str] = field(default_factory=list)
    # Why the repository could not be collected at all (a corrupt index.json), if so.
    error: str | None = None
    # What a killed writer left beside index.json or in blobs/ (`*.tmp-*`), older than gcDelay.
    temporaries: list[str] = field(default_factory=list)
    # Tags the retention policy removes (or, with retention.dryRun, would remove), and why.
    tags: list[Decision] = field(default_factory=list)
    # retention.dryRun: the manifests and tags listed were only reported, not removed.
    retention_dry_run: bool = False

    @property
    def removed(self) -> int:
        removed = len(self.manifests) + len(self.blobs) + len(self.uploads) + len(self.temporaries)
        return removed + (0 if self.retention_dry_run else len(self.tags))

    @property
    def failed(self) -> bool:
        """Whether the pass could not collect the repository, or collected nothing of it for a
        manifest that does not parse."""
        return self.error is not None or bool(self.unreadable)

    def as_dict(self) -> dict[str, Any]:
        """The report as `ocistore gc --json` prints it: sizes in bytes, as integers."""
        return {
            "tags": [{"tag": t.ref, "digest": t.digest, "reason": t.reason} for t in self.tags],
            "retention_dry_run": self.retention_dry_run,
            "manifests": self.manifests, "blobs": self.blobs, "uploads": self.uploads,
            "temporaries": self.temporaries,
            "bytes_freed": self.bytes_freed, "physical_bytes_freed": self.physical_bytes_freed,
            "held_back_bytes": self.held_back_bytes, "emptied": self.emptied,
            "unreadable_manifests": self.unreadable, "error": self.error,
        }


@dataclass
class GCTotals:
    """What passes over several repositories removed and freed, added up."""

    repositories: int = 0
    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    uploads: int = 0
    temporaries: int = 0
    bytes_freed: int = 0
    physical_bytes_freed: int = 0
    held_back_bytes: int = 0
    # Repositories that could not be collected (GCReport.failed).
    errors: int = 0

    def add(self, report: GCReport) -> None:
        self.repositories += 1
        self.tags += 0 if report.retention_dry_run else len(report.tags)
        self.manifests += len(report.manifests)
        self.blobs += len(report.blobs)
        self.uploads += len(report.uploads)
        self.temporaries += len(report.temporaries)
        self.bytes_freed += report.bytes_freed
        self.physical_bytes_freed += report.physical_bytes_freed
        self.held_back_bytes += report.held_back_bytes
        self.errors += report.failed

    def __iadd__(self, other: GCTotals) -> GCTotals:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
