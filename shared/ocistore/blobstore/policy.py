"""How a store keeps the copies of one digest, recorded on the store itself.

On disk a second copy is a hard link; where storage has no links (S3) it is a *reference*,
a 0-byte placeholder resolved through the holder index. What the objects mean is decided
by what the store can hold, never by today's setting: on storage without links a 0-byte
object of a digest other than the empty one is a reference, whatever the config says.

Which way the store is going is recorded in `.ocistore/dedupe.json`, written by the
reconcile that brings the store in line with a changed `dedupe` setting: first its
target (`"finished": null`), then, after the walk, when it finished. Every process
rereads the record every few seconds and follows it, not its own config:
- while the record's target is off, no process makes new references (a replica not yet
  restarted with the new setting makes copies), so the reconcile's one walk misses none;
- until an off-reconcile has finished, references made while dedupe was on may still name
  a copy as their bytes, so such a copy is not deleted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .. import jsondoc
from ..cache import HolderIndex
from ..digests import digest_of
from ..storage import PathNotFound, StorageDriver

MARKER = ".ocistore/dedupe.json"
# How stale a process's view of the record may be; an off-reconcile waits this long (and a
# margin) after recording its target, so every process has seen it before the walk.
RECORD_REREAD = 5.0
EMPTY_DIGESTS = frozenset(str(digest_of(b"", alg)) for alg in ("sha256", "sha512"))


def looks_like_reference(digest: str, size: int) -> bool:
    """What a reference looks like: a 0-byte object of a digest other than the empty one."""
    return size == 0 and digest not in EMPTY_DIGESTS


@dataclass(frozen=True)
class Record:
    """The last reconcile's target, and when it finished (None while it runs, or if it died)."""

    dedupe: bool
    finished: float | None


class DedupePolicy:
    def __init__(self, driver: StorageDriver, holders: HolderIndex | None) -> None:
        self.driver = driver
        self.holders = holders
        # Copies of a digest share an inode; without links they share through references.
        self.links = driver.supports_links
        self._record: tuple[float, Record | None] | None = None

    def is_placeholder(self, digest: str, size: int) -> bool:
        """Whether a blob object of that size is a reference rather than the bytes themselves."""
        return not self.links and looks_like_reference(digest, size)

    async def record(self, fresh: bool = False) -> Record | None:
        """The store's record, reread at most every `RECORD_REREAD` seconds unless `fresh`."""
        now = time.monotonic()
        if fresh or self._record is None or now - self._record[0] > RECORD_REREAD:
            self._record = (now, await self._read())
        return self._record[1]

    async def _read(self) -> Record | None:
        try:
            doc = jsondoc.loads(await self.driver.get_content(MARKER), max_bytes=1 << 20)
        except (PathNotFound, jsondoc.DocumentError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("dedupe"), bool):
            return None
        finished = doc.get("finished")
        return Record(doc["dedupe"], float(finished) if isinstance(finished, (int, float)) else None)

    async def by_reference(self) -> bool:
        """Whether a new holder of existing bytes becomes a reference (else a link or a copy)."""
        if self.holders is None or self.links:
            return False
        record = await self.record()
        return record is None or record.dedupe

    async def references_may_name_copies(self) -> bool:
        """Whether references may point at a copy no holder index (switched off) can vouch for:
        from a dedupe-on record until an off-reconcile has finished."""
        if self.holders is not None or self.links:
            return False
        record = await self.record()
        return record is not None and (record.dedupe or record.finished is None)

    async def needs_reconcile(self) -> bool:
        record = await self.record(fresh=True)
        return record is None or record.finished is None or record.dedupe != (self.holders is not None)

    async def begin(self) -> None:
        await self._write({"dedupe": self.holders is not None, "finished": None})

    async def finish(self, blobs: int) -> None:
        await self._write({"dedupe": self.holders is not None, "finished": time.time(), "blobs": blobs})

    async def _write(self, doc: dict[str, object]) -> None:
        await self.driver.put_content(MARKER, json.dumps(doc).encode())
        self._record = None
