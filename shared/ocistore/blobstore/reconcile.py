"""Bringing existing storage in line with a changed `dedupe` setting, in the background.

Dedupe on: every copy of a digest becomes a link to (or a reference of) one original, and
the holder index learns every holder. Dedupe off: every holder gets bytes of its own again.
One walk of the store grouped by digest, each digest under its own lock (never a store-wide
one), so pushes and pulls go on meanwhile. The target is recorded on the store before the
walk and the end after it (see policy): a reconcile that dies is run again, and an
off-reconcile waits until every process has seen its target, so none makes a reference the
walk would miss.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..storage import FileInfo
from .placement import hold, live_original, real
from .policy import RECORD_REREAD, looks_like_reference

if TYPE_CHECKING:
    from .store import BlobStore

# An off-reconcile's wait past RECORD_REREAD, for a process's clock and a slow reread.
SEEN_MARGIN = 1.0


@dataclass
class ReconcileReport:
    dedupe: bool
    blobs: int = 0
    digests: int = 0
    linked: int = 0
    copied: int = 0
    seconds: float = 0.0


async def reconcile(blobs: BlobStore, progress: Callable[[int], None] | None = None,
                    on_total: Callable[[int], None] | None = None) -> ReconcileReport:
    """`progress(n)` after each digest's n files; `on_total(files)` once the walk has listed them."""
    started = time.monotonic()
    report = ReconcileReport(dedupe=blobs.holders is not None)
    await blobs.policy.begin()
    if not report.dedupe and not blobs.policy.links:
        await asyncio.sleep(RECORD_REREAD + SEEN_MARGIN)
    groups: dict[str, list[FileInfo]] = {}
    async for _repo, digest, f in blobs.every_file():
        groups.setdefault(digest, []).append(f)
    report.digests = len(groups)
    if on_total is not None:
        on_total(sum(len(files) for files in groups.values()))
    for digest, files in groups.items():
        async with blobs.lock(digest):
            if blobs.holders is not None:
                report.linked += await _link_group(blobs, digest, files)
            else:
                report.copied += await _separate_group(blobs, digest, files)
        report.blobs += len(files)
        if progress is not None:
            progress(len(files))
    report.seconds = time.monotonic() - started
    await blobs.policy.finish(report.blobs)
    return report


async def _link_group(blobs: BlobStore, digest: str, files: list[FileInfo]) -> int:
    """One original holds the bytes; every other holder links (or refers) to it.

    The original is the holder index's (pushes racing the reconcile link to that one too),
    or, when the index knows no live one, the first copy found, recorded as such.
    """
    assert blobs.holders is not None
    copies = [f for f in files if not blobs.policy.is_placeholder(digest, f.size)]
    original = await live_original(blobs, digest, "")
    if original is None:
        if not copies:
            return 0
        original = copies[0].path
        await blobs.holders.add(digest, original)
    source = await real(blobs, digest, original)
    if source is None:
        return 0
    for stale in set(await blobs.holders.holders(digest)) - {f.path for f in files}:
        if not await blobs.driver.exists(stale):
            await blobs.holders.remove(digest, stale)
    changed = 0
    for f in files:
        # On S3 an ETag names content, not a copy: there every other real holder is a copy.
        if f.path != original and f in copies and (not blobs.policy.links or f.ident != source.ident):
            await hold(blobs, original, f.path)
            changed += 1
        await blobs.holders.add(digest, f.path)
    return changed


async def _separate_group(blobs: BlobStore, digest: str, files: list[FileInfo]) -> int:
    """Give every holder that shares bytes with another (a link or a reference) its own copy.

    Judged as storage without links would hold it (a 0-byte object of a non-empty digest is a
    reference), whatever the store is: a reference never becomes an empty blob.
    """
    source = next((f.path for f in files if not looks_like_reference(digest, f.size)), None)
    seen: set[str] = set()
    copied = 0
    for f in files:
        if looks_like_reference(digest, f.size) and source is not None:
            await blobs.driver.link(source, f.path)
            copied += 1
        elif blobs.policy.links and f.ident and f.ident in seen:
            await _materialize(blobs, f.path)
            copied += 1
        seen.add(f.ident)
    return copied


async def _materialize(blobs: BlobStore, path: str) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    writer = await blobs.driver.writer(tmp)
    try:
        async for chunk in blobs.driver.read_stream(path):
            await writer.write(chunk)
        await writer.close()
    except BaseException:
        await writer.cancel()
        raise
    await blobs.driver.move(tmp, path)
