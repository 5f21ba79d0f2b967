"""One store: a driver plus its settings and the caches that spare it work.

Every cache here is a shortcut, never the source of truth: a hasher is trusted only
when its byte count matches the upload file, a parsed index only while the file's
identity is unchanged, and manifest metadata is keyed by digest (immutable content).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..cache import BlobCache
from ..coalesce import Coalesced
from ..config import StorageConfig
from ..damage import DamageRegister
from ..digests import Hasher
from ..layout import BLOBS_DIR, INDEX_FILE, UPLOADS_DIR
from ..locks import Locks
from ..storage import StorageDriver
from .index import IndexStore
from .upload_quota import UploadQuota

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: K, value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        if len(self._d) > self.size:
            self._d.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._d.pop(key, None)


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
        self.config = config
        self.locks = locks
        self.route = route
        self.index = IndexStore(driver, locks)
        self.damage = DamageRegister(driver)
        self.upload_hashes: LRU[str, UploadHash] = LRU(4096)
        self.upload_quota = UploadQuota(config.max_uploads_per_repository, config.max_uploads)
        self.manifest_meta: LRU[str, object] = LRU(65536)
        self.repository_walk = Coalesced(self._walk_repositories)

    async def _walk_repositories(self) -> list[str]:
        """Directories holding an `index.json`, not descending into a layout's `blobs`."""
        return await self.driver.dirs_containing(frozenset({INDEX_FILE}), frozenset({BLOBS_DIR}))

    async def walk_layouts(self) -> list[str]:
        """Directories holding any part of a layout: repositories, and the blobs or upload
        sessions of names that never received a manifest (GC's to clear)."""
        markers = frozenset({INDEX_FILE, f"{BLOBS_DIR}/", f"{UPLOADS_DIR}/"})
        return await self.driver.dirs_containing(markers, frozenset({BLOBS_DIR}))
