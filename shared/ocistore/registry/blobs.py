"""Blobs of one repository: visible there only if that repository's layout holds them."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .. import dedupe
from ..digests import Digest
from ..errors import ErrorCode, RegistryError
from ..layout import blob_path
from ..locks import LocksUnavailable
from ..logs import Sparse
from ..names import is_valid_name
from ..storage import FileInfo, PathNotFound
from .catalog import list_repositories
from .store import Store

log = logging.getLogger("ocistore.blobs")


@dataclass(frozen=True)
class BlobRef:
    """Where a repository's blob can be read: its own file, or (a dedupe reference) the original."""

    path: str
    info: FileInfo


async def stat_blob(store: Store, repo: str, digest: Digest) -> BlobRef:
    """Where the repository's blob is; BLOB_UNKNOWN when absent, a directory, or damaged.

    A copy scrub found damaged answers as unknown, so a client pushes it again, which
    repairs it (see `dedupe.place`), instead of pulling bytes that are not its digest's.
    """
    path = blob_path(repo, digest)
    unknown = RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)})
    try:
        info = await store.driver.stat(path)
    except PathNotFound:
        raise unknown from None
    resolved = await dedupe.resolve(store, str(digest), path, info)
    if resolved is None:
        raise unknown
    if await store.damage.is_damaged(str(digest), resolved[1].ident):
        _warn_damaged(repo, str(digest))
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)},
                            message="blob is damaged in storage: push it again to repair it")
    half_way = time.time() - store.config.gc_delay / 2
    if store.config.gc and info.mtime < half_way:
        # Told it exists, a client may reference it next: renewed (rarely: only once half of
        # gcDelay has passed), GC leaves it for at least half of gcDelay more.
        try:
            await dedupe.refresh(store, str(digest), path, half_way)
        except LocksUnavailable:
            pass  # pulls go on without the lock service; GC cannot run without it either
    return BlobRef(*resolved)


_DAMAGED_WARNINGS = Sparse()


def _warn_damaged(repo: str, digest: str) -> None:
    if _DAMAGED_WARNINGS.due(digest):
        log.warning("%s of %s is damaged in storage (found by scrub): refused until pushed again", digest, repo)


def read_blob(store: Store, blob: BlobRef, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
    return store.driver.read_stream(blob.path, offset, length)


async def delete_blob(store: Store, repo: str, digest: Digest) -> None:
    try:
        await dedupe.delete_holder(store, blob_path(repo, digest))
    except PathNotFound:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None


async def mount_blob(store: Store, repo: str, digest: Digest, from_repo: str | None) -> bool:
    """Make `repo` hold a blob another repository of the store holds; False when none does.

    Without `from_repo` (spec 1.1) the blob may come from anywhere in the store: the dedupe
    cache's original, or (dedupe off) any repository that holds it.
    """
    if from_repo is not None and (not is_valid_name(from_repo) or from_repo == repo):
        return False
    if from_repo is not None:
        return await dedupe.link_existing(store, repo, digest, blob_path(from_repo, digest))
    if store.cache is not None:
        return await dedupe.link_existing(store, repo, digest, None)
    async for source in list_repositories(store):
        if source != repo and await store.driver.exists(blob_path(source, digest)):
            return await dedupe.link_existing(store, repo, digest, blob_path(source, digest))
    return False
