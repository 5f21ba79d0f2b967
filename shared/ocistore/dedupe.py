"""Deduplication: a digest the cache knows is never stored twice in a store.

On disk a second copy becomes a hard link to the original.  Every change of holders
happens under the digest's lock, and a cache entry whose original is gone is repaired
on the spot (dropped, and the next holder used).  Turning `dedupe` on or off over an
existing store is `reconcile`: one walk of the store grouped by digest, never a
store-wide lock, finished once and remembered in `.ocistore/dedupe.json`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .digests import Digest
from .layout import blob_path
from .registry.store import Store
from .storage import FileInfo, PathNotFound

log = logging.getLogger("ocistore.dedupe")

MARKER = ".ocistore/dedupe.json"
_BLOB_PATH = re.compile(r"^(?P<repo>.+)/blobs/(?P<alg>sha256|sha512)/(?P<hex>[0-9a-f]{64}|[0-9a-f]{128})$")


def blob_digest(path: str) -> str | None:
    """The digest a blob path holds, or None for any other file of the store."""
    m = _BLOB_PATH.match(path)
    return f"{m.group('alg')}:{m.group('hex')}" if m else None


async def _live_original(store: Store, digest: str, exclude: str) -> str | None:
    """The cache's original, repairing entries whose file is gone."""
    assert store.cache is not None
    while (original := await store.cache.original(digest)) is not None:
        if original != exclude and await store.driver.exists(original):
            return original
        await store.cache.remove(digest, original)
        if original == exclude:
            continue
        log.info("dedupe cache of %s listed %s, which is gone: dropped", digest, original)
    return None


async def place(store: Store, repo: str, digest: Digest, upload: str) -> None:
    """Make a verified upload the repository's blob: a link to the original when there is one."""
    target = blob_path(repo, digest)
    if store.cache is None:
        await store.driver.move(upload, target)
        return
    key = str(digest)
    async with store.locks.hold(f"dedupe:{key}"):
        if await store.driver.exists(target):
            await _drop(store, upload)
        elif (original := await _live_original(store, key, target)) is not None:
            await store.driver.link(original, target)
            await _drop(store, upload)
        else:
            await store.driver.move(upload, target)
        await store.cache.add(key, target)


async def link_existing(store: Store, repo: str, digest: Digest, source: str | None) -> bool:
    """Mount: make `repo` hold a blob from `source` (a path), or from the cache's original."""
    target = blob_path(repo, digest)
    key = str(digest)
    async with store.locks.hold(f"dedupe:{key}"):
        if source is None and store.cache is not None:
            source = await _live_original(store, key, target)
        if source is None:
            return False
        try:
            await store.driver.link(source, target)
        except PathNotFound:
            return False
        if store.cache is not None:
            await store.cache.add(key, target)
    return True


async def forget(store: Store, path: str) -> None:
    """A blob file was deleted: it holds nothing any more."""
    digest = blob_digest(path)
    if store.cache is not None and digest is not None:
        await store.cache.remove(digest, path)


async def _drop(store: Store, path: str) -> None:
    try:
        await store.driver.delete(path)
    except PathNotFound:
        pass


@dataclass
class ReconcileReport:
    dedupe: bool
    blobs: int = 0
    digests: int = 0
    linked: int = 0
    copied: int = 0
    seconds: float = 0.0


async def needs_reconcile(store: Store) -> bool:
    try:
        state = json.loads(await store.driver.get_content(MARKER))
    except (PathNotFound, ValueError):
        return True
    return not isinstance(state, dict) or state.get("dedupe") != (store.cache is not None)


async def reconcile(store: Store, progress: Callable[[int], None] | None = None) -> ReconcileReport:
    """Bring existing storage in line with the store's dedupe setting.

    Dedupe on: every copy of a digest becomes a link to one original, and the cache learns
    every holder.  Dedupe off: every holder gets bytes of its own again.  Each digest is
    handled under its own lock, so pushes and pulls go on meanwhile.
    """
    started = time.monotonic()
    report = ReconcileReport(dedupe=store.cache is not None)
    groups: dict[str, list[FileInfo]] = {}
    async for f in store.driver.walk(""):
        digest = blob_digest(f.path)
        if digest is not None:
            groups.setdefault(digest, []).append(f)
    report.digests = len(groups)
    for digest, files in groups.items():
        async with store.locks.hold(f"dedupe:{digest}"):
            if store.cache is not None:
                report.linked += await _link_group(store, digest, files)
            else:
                report.copied += await _separate_group(store, files)
        report.blobs += len(files)
        if progress is not None:
            progress(len(files))
    report.seconds = time.monotonic() - started
    await store.driver.put_content(MARKER, json.dumps(
        {"dedupe": report.dedupe, "finished": time.time(), "blobs": report.blobs}).encode())
    return report


async def _link_group(store: Store, digest: str, files: list[FileInfo]) -> int:
    assert store.cache is not None
    holders = set(await store.cache.holders(digest))
    present = [f for f in files if await store.driver.exists(f.path)]
    if not present:
        return 0
    original = next((f for f in present if f.path in holders), present[0])
    linked = 0
    for f in present:
        if f.ident != original.ident:
            await store.driver.link(original.path, f.path)
            linked += 1
    for stale in holders - {f.path for f in present}:
        if not await store.driver.exists(stale):
            await store.cache.remove(digest, stale)
    for f in present:
        await store.cache.add(digest, f.path)
    return linked


async def _separate_group(store: Store, files: list[FileInfo]) -> int:
    """Give every holder sharing physical bytes with another a copy of its own."""
    seen: set[str] = set()
    copied = 0
    for f in files:
        if f.ident and f.ident in seen:
            await _materialize(store, f.path)
            copied += 1
        seen.add(f.ident)
    return copied


async def _materialize(store: Store, path: str) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    writer = await store.driver.writer(tmp)
    try:
        async for chunk in store.driver.read_stream(path):
            await writer.write(chunk)
        await writer.close()
    except BaseException:
        await writer.cancel()
        raise
    await store.driver.move(tmp, path)
