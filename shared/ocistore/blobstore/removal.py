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


async def delete(blobs: BlobStore, path: str, older_than: float | None) -> bool:
    """Delete one blob file; False when kept. PathNotFound when the file is not there."""
    digest = blob_digest(path)
    if digest is None:
        raise PathNotFound(path)
    if await _references_may_name(blobs, digest, path):
        if older_than is not None:
            return False
        raise RegistryError(ErrorCode.UNAVAILABLE, {"digest": digest}, headers={"Retry-After": "30"},
                            message="dedupe is being switched off: blob deletes wait for the reconcile to end")
    async with blobs.lock(digest) as lease:
        if older_than is not None and (await blobs.driver.stat(path)).mtime > older_than:
            return False
        lease.check()
        if blobs.holders is None:
            await blobs.driver.delete(path)
            return True
        if not blobs.policy.links and await blobs.holders.original(digest) == path:
            await _hand_down(blobs, digest, path)
        await blobs.holders.remove(digest, path)
        await blobs.driver.delete(path)
    return True


async def _hand_down(blobs: BlobStore, digest: str, path: str) -> None:
    """Before an original goes, the next live holder gets its bytes (if it is a reference)."""
    assert blobs.holders is not None
    for heir in await blobs.holders.holders(digest):
        if heir == path:
            continue
        if await blobs.driver.exists(heir):
            if await real(blobs, digest, heir) is None:
                await blobs.driver.link(path, heir)  # a server-side copy over the placeholder
            return
        await blobs.holders.remove(digest, heir)


async def _references_may_name(blobs: BlobStore, digest: str, path: str) -> bool:
    """With dedupe off on storage without links and the reconcile not finished, references made
    while it was on may still name this copy as their bytes: it must not go yet."""
    if not await blobs.policy.references_may_name_copies():
        return False
    try:
        return not blobs.policy.is_placeholder(digest, (await blobs.driver.stat(path)).size)
    except PathNotFound:
        return False
