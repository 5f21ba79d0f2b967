"""A bounded record of what GC's passes removed, for operators: `.ocistore/gc-history.json`.

GC's repository pass calls `record` when it ends (not in a dry run). A pass is recorded
when it removed something, or could not collect (a corrupt index, a manifest that does not
parse); a pass that found nothing to do is not, so a periodic sweep of many repositories
that are in order does not push out what happened. The last `MAX_PASSES` are kept, newest
last, in the store itself (every replica and worker of the store writes the same file),
written under a lock of its own (`gc-history:store`), taken after the repository's
`index:` lock has been released, so it nests in nothing.

The record is bookkeeping: failing to write it is logged and never fails the pass, and a
file that does not parse is started again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import jsondoc
from .gc_report import GCReport
from .storage import PathNotFound

if TYPE_CHECKING:
    from .registry.store import Store

log = logging.getLogger("ocistore.gc")

HISTORY_PATH = ".ocistore/gc-history.json"
MAX_PASSES = 200
MAX_HISTORY_BYTES = 4 << 20
MAX_TAGS_KEPT = 20  # tag names kept per pass; the count is always whole


@dataclass(frozen=True)
class GCPass:
    at: float  # when the pass ended, seconds since the epoch
    repo: str
    manifests: int
    blobs: int
    uploads: int
    temporaries: int
    tags: int
    tag_names: list[str]
    bytes_freed: int
    physical_bytes_freed: int
    emptied: bool
    error: str | None

    @classmethod
    def from_report(cls, report: GCReport, at: float) -> GCPass:
        tags = [] if report.retention_dry_run else [t.ref for t in report.tags]
        error = report.error
        if error is None and report.unreadable:
            error = f"{len(report.unreadable)} kept manifests do not parse: nothing collected"
        return cls(at, report.repo, len(report.manifests), len(report.blobs), len(report.uploads),
                   len(report.temporaries), len(tags), tags[:MAX_TAGS_KEPT], report.bytes_freed,
                   report.physical_bytes_freed, report.emptied, error)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> GCPass:
        return cls(float(doc["at"]), str(doc["repo"]), int(doc["manifests"]), int(doc["blobs"]),
                   int(doc["uploads"]), int(doc["temporaries"]), int(doc["tags"]),
                   [str(t) for t in doc["tag_names"]], int(doc["bytes_freed"]),
                   int(doc["physical_bytes_freed"]), bool(doc["emptied"]),
                   None if doc["error"] is None else str(doc["error"]))


def _worth_recording(report: GCReport) -> bool:
    return report.removed > 0 or report.error is not None or bool(report.unreadable)


async def load(store: Store) -> list[GCPass]:
    """The recorded passes, oldest first; none when there is no record or it does not parse."""
    try:
        data = await store.driver.get_content(HISTORY_PATH)
    except PathNotFound:
        return []
    try:
        return [GCPass.from_json(p) for p in jsondoc.loads(data, max_bytes=MAX_HISTORY_BYTES)["passes"]]
    except (jsondoc.DocumentError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("%s does not parse (%s); it starts again at the next pass", HISTORY_PATH, exc)
        return []


async def record(store: Store, report: GCReport, now: float | None = None) -> None:
    """Append the pass (if it did or met anything) and keep the newest `MAX_PASSES`."""
    if report.dry_run or not _worth_recording(report):
        return
    entry = GCPass.from_report(report, time.time() if now is None else now)
    try:
        async with store.locks.hold("gc-history:store") as lease:
            passes = [*await load(store), entry][-MAX_PASSES:]
            lease.check()
            body = json.dumps({"passes": [asdict(p) for p in passes]}, separators=(",", ":"))
            await store.driver.put_content(HISTORY_PATH, body.encode())
    except Exception as exc:  # bookkeeping: the pass itself has succeeded
        log.warning("gc: %s: the pass was not added to %s: %s", report.repo, HISTORY_PATH, exc)
