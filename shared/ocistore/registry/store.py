"""One store: a driver plus its settings and the memos that spare it work.

Every memo here is a shortcut, never the source of truth: a hasher is trusted only
when its byte count matches the upload file, a parsed index only while the file's
identity is unchanged, and manifest metadata is keyed by digest (immutable content).
Each is bounded by an estimate of the memory it holds, not only by its number of entries.
("Cache" is kept for the dedupe holder index: `self.cache`.)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cache import BlobCache
from ..coalesce import Coalesced
from ..config import StorageConfig
from ..damage import DamageRegister
from ..digests import Hasher
from ..layout import BLOBS_DIR, INDEX_FILE, UPLOADS_DIR
from ..locks import Locks
from ..recent import Recent
from ..storage import FileInfo, PathNotFound, StorageDriver, is_temporary
from .index import IndexStore
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
                 cache: BlobCache | None = None) -> None:
        self.driver = driver
        # The dedupe cache; None when dedupe is off.
        self.cache = cache
        # Dedupe by reference (placeholders resolved through the cache) where there are no links.
        self.references = cache is not None and not driver.supports_links
        # (when read, whether the last dedupe reconcile left the store deduplicated): see dedupe.
        self.recorded_dedupe: tuple[float, bool] | None = None
        self.config = config
        self.locks = locks
        self.route = route
        self.index = IndexStore(driver, locks)
        self.damage = DamageRegister(driver)
        self.upload_hashes: Recent[str, UploadHash] = Recent(4096)
        self.manifest_meta: Recent[str, object] = Recent(MANIFEST_MEMO_ENTRIES, MANIFEST_MEMO_BYTES)
        self.upload_quota = UploadQuota(config.max_uploads_per_repository, config.max_uploads)
        self.repository_walk = Coalesced(self._walk_repositories)

    async def _walk_repositories(self) -> list[str]:
        """Directories holding an `index.json`, not descending into a layout's `blobs`."""
        return await self.driver.dirs_containing(frozenset({INDEX_FILE}), frozenset({BLOBS_DIR}))

    async def walk_layouts(self) -> list[str]:
        """Directories holding any part of a layout: repositories, and the blobs or upload
        sessions of names that never received a manifest (GC's to clear)."""
        markers = frozenset({INDEX_FILE, f"{BLOBS_DIR}/", f"{UPLOADS_DIR}/"})
        return await self.driver.dirs_containing(markers, frozenset({BLOBS_DIR}))

    async def stray_temporaries(self, repo: str, older_than: float) -> list[FileInfo]:
        """Temp files a killed writer left beside the repository's index.json or in its
        `blobs/<alg>/`, older than `older_than`: GC collects them, scrub reports them."""
        strays: list[FileInfo] = []
        dirs = [repo]
        try:
            dirs += [f"{repo}/{BLOBS_DIR}/{a.rstrip('/')}" for a in await self.driver.list(f"{repo}/{BLOBS_DIR}")
                     if a.endswith("/")]
        except PathNotFound:
            pass
        for directory in dirs:
            try:
                names = await self.driver.list(directory)
            except PathNotFound:
                continue
            for name in names:
                if name.endswith("/") or not is_temporary(name):
                    continue
                try:
                    info = await self.driver.stat(f"{directory}/{name}")
                except PathNotFound:
                    continue
                if info.mtime <= older_than:
                    strays.append(info)
        return strays
