"""Deleting a blob file without losing bytes another holder relies on.

An original that others reference first hands its bytes to the next holder (the one the
holder index promotes), then goes. GC's deletion (`older_than`) re-checks the file's age
under the digest's lock at the moment of deletion, so a push, mount or HEAD that renewed it
since GC looked keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ErrorCode, RegistryError
from ..storage import PathNotFound
from .paths import blob_digest
from .placement import real

if TYPE_CHECKING:
    from .store import BlobStore


async def delete(blobs: BlobStore, path: str, older_than: float | None) -> int | None:
    """Delete one blob file; the physical bytes that freed (0 when another holder keeps them),
    None when kept. PathNotFound when the file is not there."""
    digest = blob_digest(path)
    if digest is None:
        raise PathNotFound(path)
    if await _references_may_name(blobs, digest, path):
        if older_than is not None:
            return None
        raise RegistryError(ErrorCode.UNAVAILABLE, {"digest": digest}, headers={"Retry-After": "30"},
                            message="dedupe is being switched off: blob deletes wait for the reconcile to end")
    async with blobs.lock(digest) as lease:
        info = await blobs.driver.stat(path)
        if older_than is not None and info.mtime > older_than:
            return None
        lease.check()
        # A hard link another repository holds keeps the bytes; a reference (0 bytes) holds none.
        freed = info.size if info.links <= 1 else 0
        if blobs.holders is None:
            await blobs.driver.delete(path)
            return freed
        if not blobs.policy.links and await blobs.holders.original(digest) == path \
                and await _hand_down(blobs, digest, path):
            freed = 0  # the bytes live on in the heir
        await blobs.holders.remove(digest, path)
        await blobs.driver.delete(path)
    return freed


async def _hand_down(blobs: BlobStore, digest: str, path: str) -> bool:
    """Before an original goes, the next live holder gets its bytes (if it is a reference);
    whether one did."""
    assert blobs.holders is not None
    for heir in await blobs.holders.holders(digest):
        if heir == path:
            continue
        if await blobs.driver.exists(heir):
            if await real(blobs, digest, heir) is None:
                await blobs.driver.link(path, heir)  # a server-side copy over the placeholder
            return True
        await blobs.holders.remove(digest, heir)
    return False


async def _references_may_name(blobs: BlobStore, digest: str, path: str) -> bool:
    """With dedupe off on storage without links and the reconcile not finished, references made
    while it was on may still name this copy as their bytes: it must not go yet."""
    if not await blobs.policy.references_may_name_copies():
        return False
    try:
        return not blobs.policy.is_placeholder(digest, (await blobs.driver.stat(path)).size)
    except PathNotFound:
        return False
