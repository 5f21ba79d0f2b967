"""Placing blobs: a verified upload, a manifest's bytes, a mount.

A digest the holder index knows is never stored twice: a second copy becomes a link to, or
(storage without links) a reference of, the original, as long as that original is intact.
A copy found damaged is never linked to: the verified bytes take the place of every damaged
copy, so one honest push repairs a poisoned digest for all its holders. Every change of a
digest's holders happens under the digest's lock, and a holder-index entry whose file is gone
is repaired on the spot (dropped, and the next holder used).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..digests import Digest
from ..errors import ErrorCode, RegistryError
from ..storage import FileInfo, PathNotFound
from .paths import blob_path

if TYPE_CHECKING:
    from .store import BlobStore

log = logging.getLogger("ocistore.blobs")


async def real(blobs: BlobStore, digest: str, path: str) -> FileInfo | None:
    """The holder's file when it holds the bytes themselves (not gone, not a placeholder, not a
    directory squatting on a blob's path)."""
    try:
        info = await blobs.driver.stat_file(path)
    except PathNotFound:
        return None
    return None if blobs.policy.is_placeholder(digest, info.size) else info


async def live_original(blobs: BlobStore, digest: str, exclude: str) -> str | None:
    """The holder index's original, repairing entries whose file is gone."""
    assert blobs.holders is not None
    while (original := await blobs.holders.original(digest)) is not None:
        if await real(blobs, digest, original) is not None:
            return None if original == exclude else original  # `exclude` itself holds the bytes
        await blobs.holders.remove(digest, original)
        log.info("holder index of %s listed %s, which holds no bytes: dropped", digest, original)
    return None


async def place(blobs: BlobStore, repo: str, digest: Digest, source: str | bytes, size: int) -> None:
    """Make verified bytes the repository's blob: `source` is an upload file of the caller's
    (moved into place or dropped), or the bytes themselves (a small push, written once)."""
    target = blob_path(repo, digest)
    await _clear_way(blobs, target)
    key = str(digest)
    async with blobs.lock(key) as lease:
        if blobs.holders is None:
            # Under the digest's lock all the same: GC's deletion re-checks the age under it.
            lease.check()
            await _store(blobs, source, target)
            return
        if isinstance(source, bytes) and await _writes_blindly(blobs, key, target):
            lease.check()
            await blobs.driver.put_content(target, source)
            await blobs.holders.add(key, target)
            return
        damaged: set[str] = set()
        here = await _intact(blobs, key, target, size, damaged)
        original = None if here else await live_original(blobs, key, target)
        lease.check()
        if here:
            # Pushed again: fresh for GC's delay, as a push in flight must be.
            await blobs.driver.touch(target)
            await _drop_source(blobs, source)
        elif original is not None and await _intact(blobs, key, original, size, damaged):
            await hold(blobs, original, target)
            await _drop_source(blobs, source)
        else:
            await _store(blobs, source, target)
            if damaged:
                await _repair(blobs, key, target, damaged)
        await blobs.holders.add(key, target)


async def _writes_blindly(blobs: BlobStore, digest: str, target: str) -> bool:
    """Whether verified bytes in memory may just be written at `target`, without looking at what
    is there: no copy of the digest is known damaged (so there is nothing to repair) and the
    holder index names no original elsewhere (so there is nothing to refer to). Whatever the
    target holds then, these bytes are its digest's: the write renews it, or makes it whole.
    Not where holders share bytes by links: rewriting an original would split it from them."""
    assert blobs.holders is not None
    if blobs.driver.supports_links or await blobs.damage.any_damaged(digest):
        return False
    original = await blobs.holders.original(digest)
    return original is None or original == target


async def _store(blobs: BlobStore, source: str | bytes, target: str) -> None:
    if isinstance(source, bytes):
        await blobs.driver.put_content(target, source)
    else:
        await blobs.driver.move(source, target)


async def _drop_source(blobs: BlobStore, source: str | bytes) -> None:
    if isinstance(source, str):
        await _drop(blobs, source)


async def put_document(blobs: BlobStore, repo: str, digest: Digest, body: bytes) -> None:
    """A manifest's bytes (hashed by the caller). The caller holds the repository's index lock,
    under which GC decides and deletes too, so the renewal and a deletion cannot cross."""
    path = blob_path(repo, digest)
    if await blobs.driver.create_content(path, body):
        return  # a new manifest: on S3 one conditional write, no look first
    try:
        held = (await blobs.driver.stat_file(path)).size == len(body)
    except PathNotFound:
        held = False
    if held:
        await blobs.driver.touch(path)  # pushed again: fresh for GC's delay
    else:
        await blobs.driver.put_content(path, body)


async def _clear_way(blobs: BlobStore, target: str) -> None:
    """A layout copied in by hand may hold a directory at a blob's path: an empty one gives way,
    anything in it is the operator's to sort out, never overwritten or taken for the blob. Where
    a directory is in no file's way (S3), a blob is written beside what lies below its key."""
    if not blobs.driver.dirs_block_files:
        return
    try:
        if not (await blobs.driver.stat(target)).is_dir:
            return
    except PathNotFound:
        return
    await blobs.driver.remove_empty_dir(target)
    if await blobs.driver.exists(target):
        log.error("%s is a directory, not a blob: move it away so the blob can be stored", target)
        raise RegistryError(ErrorCode.UNKNOWN, message="storage holds a directory where this blob belongs: "
                            "the registry's operator must remove it")


async def _intact(blobs: BlobStore, digest: str, path: str, size: int, damaged: set[str]) -> bool:
    """Whether `path` serves `size` bytes not known to be damaged; adds a damaged copy's identity."""
    try:
        resolved = await blobs.resolve(digest, path, await blobs.driver.stat_file(path))
    except PathNotFound:
        return False
    if resolved is None:
        return False
    if resolved.info.size != size or await blobs.damage.is_damaged(digest, resolved.info.ident):
        damaged.add(resolved.info.ident)
        return False
    return True


async def _repair(blobs: BlobStore, digest: str, good: str, damaged: set[str]) -> None:
    """Give every holder whose bytes are a damaged copy the verified bytes at `good` instead."""
    assert blobs.holders is not None
    for holder in await blobs.holders.holders(digest):
        if holder == good:
            continue
        try:
            info = await blobs.driver.stat_file(holder)
        except PathNotFound:
            continue
        if info.ident in damaged:
            await blobs.driver.link(good, holder)
            log.warning("dedupe: %s held a damaged copy of %s: replaced by a verified push", holder, digest)
    await blobs.damage.clear(digest, damaged)


async def _serving(blobs: BlobStore, digest: str, path: str) -> FileInfo | None:
    """Where `path`'s bytes are when it yields the digest's bytes: not a reference whose original
    is gone, nor a copy scrub found damaged."""
    try:
        resolved = await blobs.resolve(digest, path, await blobs.driver.stat_file(path))
    except PathNotFound:
        return None
    if resolved is None or await blobs.damage.is_damaged(digest, resolved.info.ident):
        return None
    return resolved.info


async def mount(blobs: BlobStore, repo: str, digest: Digest, sources: Sequence[str] | None) -> bool:
    target = blob_path(repo, digest)
    key = str(digest)
    async with blobs.lock(key) as lease:
        if await _serving(blobs, key, target) is not None:
            # Already held (maybe as the very original others refer to): never overwrite it.
            lease.check()
            await blobs.driver.touch(target)
            if blobs.holders is not None:
                await blobs.holders.add(key, target)
            return True
        source = await _first_serving(blobs, key, target, sources)
        if source is None:
            return False
        lease.check()
        try:
            await hold(blobs, source.path, target)  # a link renews the shared inode's age
        except PathNotFound:
            return False
        if blobs.holders is not None:
            await blobs.holders.add(key, target)
    return True


async def _first_serving(blobs: BlobStore, digest: str, target: str,
                         sources: Sequence[str] | None) -> FileInfo | None:
    """The bytes (never a reference) of the first source repository that serves the digest."""
    if sources is None:
        if blobs.holders is None:
            return None
        original = await live_original(blobs, digest, target)
        paths = [] if original is None else [original]
    else:
        paths = [blob_path(source, Digest.parse(digest)) for source in sources]
    for path in paths:
        if path != target and (found := await _serving(blobs, digest, path)) is not None:
            return found
    return None


async def hold(blobs: BlobStore, original: str, target: str) -> None:
    """Make `target` a holder of the original's bytes: a hard link, a reference, or (the store's
    record says dedupe is going off) a copy of its own."""
    if await blobs.policy.by_reference():
        await blobs.driver.put_content(target, b"")
    else:
        await blobs.driver.link(original, target)


async def _drop(blobs: BlobStore, path: str) -> None:
    try:
        await blobs.driver.delete(path)
    except PathNotFound:
        pass
