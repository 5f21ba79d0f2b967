"""One store: a driver plus its settings and the memos that spare it work.

Every memo here is a shortcut, never the source of truth: a hasher is trusted only
when its byte count matches the upload file, a parsed index only while the file's
identity is unchanged, and manifest metadata is keyed by digest (immutable content).
Each is bounded by an estimate of the memory it holds, not only by its number of entries.
("Cache" is kept for the dedupe holder index, which the blob store holds.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..blobstore import BlobStore
from ..cache import HolderIndex
from ..config import StorageConfig
from ..damage import DamageRegister
from ..digests import Hasher
from ..layout import BLOBS_DIR, INDEX_FILE, UPLOADS_DIR
from ..locks import Locks, default_lock_dir
from ..recent import Recent
from ..statistics import Statistics
from ..storage import FileInfo, PathNotFound, StorageDriver, is_temporary
from .index import IndexStore
from .repositories import RepositoryIndex
from .upload_quota import UploadQuota

# The parsed manifests' facts: compact (see manifest_doc), so this holds very many of them.
MANIFEST_MEMO_BYTES = 32 << 20
MANIFEST_MEMO_ENTRIES = 65536


@dataclass
class UploadHash:
    """A running hash of an upload's first `offset` bytes."""

    hasher: Hasher
    offset: int


class Store:
    def __init__(self, driver: StorageDriver, config: StorageConfig, locks: Locks, route: str = "",
                 holders: HolderIndex | None = None, redis_url: str | None = None) -> None:
        self.driver = driver
        self.config = config
        self.locks = locks
        self.route = route
        # Every repository, sorted, shared through Redis when it is configured: the catalog.
        self.repositories = RepositoryIndex(driver, locks, self.walk_repositories, _identity(config), route,
                                            redis_url, _journal_path(config))
        self.index = IndexStore(driver, locks, self.repositories)
        self.damage = DamageRegister(driver)
        self.blobs = BlobStore(driver, locks, self.damage, holders,
                               gc_delay=config.gc_delay if config.gc else None)
        # Push and pull times, for retention; shared through Redis when it is configured.
        self.statistics = Statistics(driver, locks, redis_url)
        self.upload_hashes: Recent[str, UploadHash] = Recent(4096)
        self.manifest_meta: Recent[str, object] = Recent(MANIFEST_MEMO_ENTRIES, MANIFEST_MEMO_BYTES)
        self.upload_quota = UploadQuota(config.max_uploads_per_repository, config.max_uploads)

    async def walk_repositories(self) -> list[str]:
        """Directories holding an `index.json`, not descending into a layout's `blobs`: the
        whole store, so only the repository index's build and verification walk it."""
        return await self.driver.dirs_containing(frozenset({INDEX_FILE}), frozenset({BLOBS_DIR}))

    async def walk_layouts(self) -> list[str]:
        """Directories holding any part of a layout: repositories, and the blobs or upload
        sessions of names that never received a manifest (GC's to clear)."""
        markers = frozenset({INDEX_FILE, f"{BLOBS_DIR}/", f"{UPLOADS_DIR}/"})
        return await self.driver.dirs_containing(markers, frozenset({BLOBS_DIR}))

    async def stray_temporaries(self, repo: str, older_than: float) -> list[FileInfo]:
        """Temp files a killed writer left beside the repository's index.json, older than
        `older_than` (those in `blobs/` are the blob store's): GC collects them, scrub reports them."""
        strays: list[FileInfo] = []
        try:
            names = await self.driver.list(repo)
        except PathNotFound:
            names = []
        for name in names:
            if name.endswith("/") or not is_temporary(name):
                continue
            try:
                info = await self.driver.stat(f"{repo}/{name}")
            except PathNotFound:
                continue
            if info.mtime <= older_than:
                strays.append(info)
        return strays


def _identity(config: StorageConfig) -> str:
    """Which storage a store is, whatever its route: the processes of one host that open the
    same storage share one in-memory repository index."""
    s3 = config.storage_driver
    if s3 is not None:
        return f"s3:{s3.regionendpoint}:{s3.bucket}:{s3.rootdirectory}"
    return f"local:{os.path.abspath(config.local_root)}"


def _journal_path(config: StorageConfig) -> str:
    """Beside the store's locks: inside a local store; for S3 without Redis (one host), in the
    host's directory for that bucket's locks."""
    if config.storage_driver is None:
        return os.path.join(os.path.abspath(config.local_root), ".ocistore", "repositories.journal")
    return os.path.join(default_lock_dir(_identity(config)), "repositories.journal")
