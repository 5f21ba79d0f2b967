"""Blobs of one repository: visible there only if that repository's layout holds them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..digests import Digest
from ..errors import ErrorCode, RegistryError
from ..layout import blob_path
from ..names import is_valid_name
from ..storage import FileInfo, PathNotFound
from .catalog import list_repositories
from .store import Store


async def stat_blob(store: Store, repo: str, digest: Digest) -> FileInfo:
    try:
        return await store.driver.stat(blob_path(repo, digest))
    except PathNotFound:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None


def read_blob(store: Store, repo: str, digest: Digest, offset: int = 0,
              length: int | None = None) -> AsyncIterator[bytes]:
    return store.driver.read_stream(blob_path(repo, digest), offset, length)


async def delete_blob(store: Store, repo: str, digest: Digest) -> None:
    try:
        await store.driver.delete(blob_path(repo, digest))
    except PathNotFound:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None


async def mount_blob(store: Store, repo: str, digest: Digest, from_repo: str | None) -> bool:
    """Make `repo` hold a blob another repository of the store holds; False when none does.

    Without `from_repo` (spec 1.1) any repository of this store may serve as the source.
    """
    if from_repo is not None:
        sources = [from_repo] if is_valid_name(from_repo) and from_repo != repo else []
    else:
        sources = [r async for r in list_repositories(store) if r != repo]
    for source in sources:
        try:
            await store.index.ensure(repo)
            await store.driver.link(blob_path(source, digest), blob_path(repo, digest))
        except PathNotFound:
            continue
        return True
    return False
