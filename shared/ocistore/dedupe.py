"""Deduplication: a digest the cache knows is never stored twice in a store.

On disk a second copy becomes a hard link to the original.  Where the storage has no
links (S3), it becomes a *reference*: an empty placeholder object, resolved through the
cache to the original on every read (zot's model).  Deleting an original first moves its
bytes to the next holder, so content is never lost, and a placeholder whose original is
gone is never served: a read gets the requested digest's bytes or a 404.

Every change of holders happens under the digest's lock, and a cache entry whose
original is gone is repaired on the spot (dropped, and the next holder used).  Turning
`dedupe` on or off over an existing store is `reconcile`: one walk of the store grouped
by digest, never a store-wide lock, finished once and remembered in `.ocistore/dedupe.json`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from . import jsondoc
from .digests import Digest, digest_of
from .errors import ErrorCode, RegistryError
from .layout import blob_path
from .locks import LockTimeout
from .logs import Sparse
from .registry.store import Store
from .storage import FileInfo, PathNotFound

log = logging.getLogger("ocistore.dedupe")

MARKER = ".ocistore/dedupe.json"
RECORD_REREAD = 5.0
# How long a pull waits for a digest's lock to renew the blob's age before going on without.
REFRESH_WAIT = 0.5
# A warning a minute per digest whose reference cannot be followed (dedupe switched off).
_UNFOLLOWED = Sparse()
_BLOB_PATH = re.compile(r"(?P<repo>.+)/blobs/(?P<alg>sha256|sha512)/(?P<hex>[0-9a-f]{64}|[0-9a-f]{128})")


EMPTY_DIGESTS = frozenset(str(digest_of(b"", alg)) for alg in ("sha256", "sha512"))


def is_placeholder(store: Store, digest: str, size: int) -> bool:
    """Whether a blob object of that size is a reference rather than the bytes themselves.

    Judged by what the store can hold, not by today's setting: on storage without links a
    0-byte object of a digest that is not the empty one is a reference, even once dedupe is
    switched off and until the reconcile has given every holder its own bytes.
    """
    return not store.driver.supports_links and size == 0 and digest not in EMPTY_DIGESTS


def blob_digest(path: str) -> str | None:
    """The digest a blob path holds, or None for any other file of the store."""
    m = _BLOB_PATH.fullmatch(path)
    return f"{m.group('alg')}:{m.group('hex')}" if m else None


async def _real(store: Store, digest: str, path: str) -> FileInfo | None:
    """The holder's file when it holds the bytes themselves (not gone, not a placeholder, not a
    directory squatting on a blob's path)."""
    try:
        info = await store.driver.stat(path)
    except PathNotFound:
        return None
    return None if info.is_dir or is_placeholder(store, digest, info.size) else info


async def _live_original(store: Store, digest: str, exclude: str) -> str | None:
    """The cache's original, repairing entries whose file is gone."""
    assert store.cache is not None
    while (original := await store.cache.original(digest)) is not None:
        if original != exclude and await _real(store, digest, original) is not None:
            return original
        if original == exclude and await _real(store, digest, original) is not None:
            return None  # the target itself holds the bytes
        await store.cache.remove(digest, original)
        log.info("dedupe cache of %s listed %s, which holds no bytes: dropped", digest, original)
    return None


async def resolve(store: Store, digest: str, path: str, info: FileInfo) -> tuple[str, FileInfo] | None:
    """Where the bytes of a blob file are: itself, or (a reference) its original; None if nowhere."""
    if info.is_dir:
        return None
    if not is_placeholder(store, digest, info.size):
        return path, info
    if store.cache is None:
        # Dedupe switched off, the reconcile not done: the holder index is not open, so this
        # reference cannot be followed. Unknown (a client pushes it again), never empty bytes.
        if _UNFOLLOWED.due(digest):
            log.warning("%s is a dedupe reference, unreadable until the dedupe reconcile ends", path)
        return None
    original = await _live_original(store, digest, path)
    if original is None:
        log.warning("%s is a reference to %s, whose bytes are gone", path, digest)
        return None
    real = await _real(store, digest, original)
    return (original, real) if real is not None else None


async def place(store: Store, repo: str, digest: Digest, upload: str, size: int) -> None:
    """Make a verified upload of `size` bytes the repository's blob.

    It becomes a link to (or a reference of) the digest's copy already stored when that copy
    is intact: of the same size, and not found damaged by scrub.  Otherwise the verified bytes
    take the place of every damaged copy, so one honest push repairs a poisoned digest for all
    of its holders.
    """
    target = blob_path(repo, digest)
    await _clear_way(store, target)
    if store.cache is None:
        # Under the digest's lock all the same: GC's deletion re-checks the age under it.
        async with store.locks.hold(f"dedupe:{digest}") as lease:
            lease.check()
            await store.driver.move(upload, target)
        return
    key = str(digest)
    async with store.locks.hold(f"dedupe:{key}") as lease:
        damaged: set[str] = set()
        here = await _intact(store, key, target, size, damaged)
        original = None if here else await _live_original(store, key, target)
        lease.check()
        if here:
            # Pushed again: fresh for GC's delay, as a push in flight must be.
            await store.driver.touch(target)
            await _drop(store, upload)
        elif original is not None and await _intact(store, key, original, size, damaged):
            await _hold(store, original, target)
            await _drop(store, upload)
        else:
            await store.driver.move(upload, target)
            if damaged:
                await _repair(store, key, target, damaged)
        await store.cache.add(key, target)


async def _clear_way(store: Store, target: str) -> None:
    """A layout copied in by hand may hold a directory at a blob's path: an empty one gives way,
    anything in it is the operator's to sort out, never overwritten or taken for the blob."""
    try:
        if not (await store.driver.stat(target)).is_dir:
            return
    except PathNotFound:
        return
    await store.driver.remove_empty_dir(target)
    if await store.driver.exists(target):
        log.error("%s is a directory, not a blob: move it away so the blob can be stored", target)
        raise RegistryError(ErrorCode.UNKNOWN, message="storage holds a directory where this blob belongs: "
                            "the registry's operator must remove it")


async def _intact(store: Store, digest: str, path: str, size: int, damaged: set[str]) -> bool:
    """Whether `path` serves `size` bytes not known to be damaged; adds a damaged copy's identity."""
    try:
        resolved = await resolve(store, digest, path, await store.driver.stat(path))
    except PathNotFound:
        return False
    if resolved is None:
        return False
    info = resolved[1]
    if info.size != size or await store.damage.is_damaged(digest, info.ident):
        damaged.add(info.ident)
        return False
    return True


async def _repair(store: Store, digest: str, good: str, damaged: set[str]) -> None:
    """Give every holder whose bytes are a damaged copy the verified bytes at `good` instead."""
    assert store.cache is not None
    for holder in await store.cache.holders(digest):
        if holder == good:
            continue
        try:
            info = await store.driver.stat(holder)
        except PathNotFound:
            continue
        if info.ident in damaged:
            await store.driver.link(good, holder)
            log.warning("dedupe: %s held a damaged copy of %s: replaced by a verified push", holder, digest)
    await store.damage.clear(digest, damaged)


async def _serves(store: Store, digest: str, path: str) -> bool:
    """Whether `path` yields the digest's bytes: not a reference whose original is gone, nor a
    copy scrub found damaged."""
    try:
        resolved = await resolve(store, digest, path, await store.driver.stat(path))
    except PathNotFound:
        return False
    return resolved is not None and not await store.damage.is_damaged(digest, resolved[1].ident)


async def link_existing(store: Store, repo: str, digest: Digest, source: str | None) -> bool:
    """Mount: make `repo` hold a blob from `source` (a path), or from the cache's original."""
    target = blob_path(repo, digest)
    key = str(digest)
    async with store.locks.hold(f"dedupe:{key}"):
        if await _serves(store, key, target):
            # Already held (maybe as the very original others refer to): never overwrite it.
            await store.driver.touch(target)
            if store.cache is not None:
                await store.cache.add(key, target)
            return True
        if source is None and store.cache is not None:
            source = await _live_original(store, key, target)
        if source is None or not await _serves(store, key, source):
            return False
        try:
            if store.cache is not None and store.references:
                resolved = await resolve(store, key, source, await store.driver.stat(source))
                if resolved is None:
                    return False
                source = resolved[0]
            await _hold(store, source, target)
            if not store.references:
                await store.driver.touch(target)  # a new link keeps the inode's old age
        except PathNotFound:
            return False
        if store.cache is not None:
            await store.cache.add(key, target)
    return True


async def _hold(store: Store, original: str, target: str) -> None:
    """Make `target` a holder of the original's bytes: a hard link, or a reference."""
    if store.references:
        await store.driver.put_content(target, b"")
    else:
        await store.driver.link(original, target)


async def refresh(store: Store, digest: str, path: str, older_than: float) -> None:
    """Renew a blob's age, under its digest's lock, for a client just told it exists (HEAD,
    GET, mount): GC, which re-checks the age under the same lock, then leaves it for gcDelay.

    Only if still older than `older_than` once the lock is had (a burst of HEADs renews it
    once), and only if the lock comes quickly: a pull never waits behind a long placement,
    which itself leaves the blob fresh.
    """
    try:
        async with store.locks.hold(f"dedupe:{digest}", wait=REFRESH_WAIT):
            try:
                if (await store.driver.stat(path)).mtime < older_than:
                    await store.driver.touch(path)
            except PathNotFound:
                pass
    except LockTimeout:
        pass


async def delete_holder(store: Store, path: str, older_than: float | None = None) -> bool:
    """Delete a blob file without losing bytes another holder relies on; False when kept.

    With `older_than` (GC), the file goes only if, under the digest's lock, it is still no
    younger than that: a push, mount or HEAD that renewed it since GC looked keeps it.
    An original that others reference hands its bytes to the next holder first (the one
    the cache promotes), then goes.  PathNotFound when the file is not there.
    """
    digest = blob_digest(path)
    if digest is not None and await _references_may_point_here(store, digest, path):
        if older_than is not None:
            return False
        raise RegistryError(ErrorCode.UNAVAILABLE, {"digest": digest}, headers={"Retry-After": "30"},
                            message="dedupe is being switched off: blob deletes wait for the reconcile to end")
    if digest is None or (store.cache is None and older_than is None):
        await store.driver.delete(path)
        return True
    async with store.locks.hold(f"dedupe:{digest}"):
        if older_than is not None and (await store.driver.stat(path)).mtime > older_than:
            return False
        if store.cache is None:
            await store.driver.delete(path)
            return True
        if store.references and await store.cache.original(digest) == path:
            heirs = [h for h in await store.cache.holders(digest) if h != path]
            for heir in heirs:
                if await store.driver.exists(heir):
                    if await _real(store, digest, heir) is None:
                        await store.driver.link(path, heir)  # a server-side copy over the placeholder
                    break
                await store.cache.remove(digest, heir)
        await store.cache.remove(digest, path)
        await store.driver.delete(path)
    return True


async def _references_may_point_here(store: Store, digest: str, path: str) -> bool:
    """With dedupe off on storage without links and the reconcile not done, references made
    while it was on may still name this copy as their bytes: it must not go yet."""
    if store.cache is not None or store.driver.supports_links:
        return False
    try:
        if is_placeholder(store, digest, (await store.driver.stat(path)).size):
            return False
    except PathNotFound:
        return False
    return await _dedupe_recorded_on(store)


async def _dedupe_recorded_on(store: Store) -> bool:
    """Whether the last reconcile left the store deduplicated (read at most every few seconds)."""
    now = time.monotonic()
    if store.recorded_dedupe is None or now - store.recorded_dedupe[0] > RECORD_REREAD:
        try:
            state = jsondoc.loads(await store.driver.get_content(MARKER), max_bytes=1 << 20)
            on = isinstance(state, dict) and state.get("dedupe") is True
        except (PathNotFound, jsondoc.DocumentError):
            on = False
        store.recorded_dedupe = (now, on)
    return store.recorded_dedupe[1]


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
        state = jsondoc.loads(await store.driver.get_content(MARKER), max_bytes=1 << 20)
    except (PathNotFound, jsondoc.DocumentError):
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
    """One original holds the bytes; every other holder links (or refers) to it.

    The original is the cache's (pushes racing the reconcile link to that one too), or,
    when the cache knows no live one, the first copy found, recorded as such.
    """
    assert store.cache is not None
    real = [f for f in files if not is_placeholder(store, digest, f.size)]
    original = await _live_original(store, digest, "")
    if original is None:
        if not real:
            return 0
        original = real[0].path
        await store.cache.add(digest, original)
    source = await _real(store, digest, original)
    if source is None:
        return 0
    for stale in set(await store.cache.holders(digest)) - {f.path for f in files}:
        if not await store.driver.exists(stale):
            await store.cache.remove(digest, stale)
    changed = 0
    for f in files:
        # On S3 an ETag names content, not a copy: there every other real holder is a copy.
        if f.path != original and f in real and (store.references or f.ident != source.ident):
            await _hold(store, original, f.path)
            changed += 1
        await store.cache.add(digest, f.path)
    return changed


async def _separate_group(store: Store, files: list[FileInfo]) -> int:
    """Give every holder that shares bytes with another (a link or a reference) its own copy."""
    digest = blob_digest(files[0].path) or ""
    source = next((f.path for f in files if not is_placeholder_any(digest, f.size)), None)
    seen: set[str] = set()
    copied = 0
    for f in files:
        if is_placeholder_any(digest, f.size) and source is not None:
            await store.driver.link(source, f.path)
            copied += 1
        elif store.driver.supports_links and f.ident and f.ident in seen:
            await _materialize(store, f.path)
            copied += 1
        seen.add(f.ident)
    return copied


def is_placeholder_any(digest: str, size: int) -> bool:
    """A reference left by dedupe on storage without links, whatever the store's setting now."""
    return size == 0 and digest not in EMPTY_DIGESTS


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
