"""The registry: routes a repository name to the store that keeps it.

With `subPaths`, a repository whose first name component matches a route lives in that
store; everything else lives in the default store.
"""

from __future__ import annotations

import asyncio
import logging

from ..cache import open_cache
from ..config import Config, StorageConfig
from ..locks import Locks, locks_for
from ..statistics import FLUSH_INTERVAL
from ..storage import StorageDriver
from ..storage.local import LocalDriver
from ..storage.measured import MeasuredDriver
from .store import Store

log = logging.getLogger("ocistore")


class Registry:
    def __init__(self, stores: dict[str, Store]) -> None:
        self.default = stores[""]
        self.stores = stores

    @classmethod
    def from_config(cls, config: Config) -> Registry:
        """Stores as configured, each with the locks every process opening it shares."""
        stores = {"": _make_store(config.storage, locks_for(config), "", config.redis_url)}
        for route, sub in config.storage.sub_paths.items():
            stores[route] = _make_store(sub, locks_for(config, sub), route, config.redis_url)
        return cls(stores)

    async def close(self) -> None:
        """Close every store's driver and cache connections of the running event loop."""
        for store in self.stores.values():
            await store.driver.close()
            if store.blobs.holders is not None:
                await store.blobs.holders.close()
            await store.statistics.close()
            await store.repositories.close()

    async def build_repository_indexes(self) -> None:
        """Walk each store once for its repository index; a store that cannot be walked now
        (storage down) is walked by its first catalog request instead."""
        for store in self.stores.values():
            try:
                await store.repositories.ensure_built()
            except Exception as exc:
                log.warning("store %s: the repository index is not built yet (%s: %s); the next catalog "
                            "request tries again", store.route or "/", type(exc).__name__, exc)

    async def flush_statistics(self) -> None:
        for store in self.stores.values():
            await store.statistics.flush()

    async def keep_flushing_statistics(self) -> None:
        """What a serving process runs: pulls and pushes reach the shared record in batches."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush_statistics()

    def store_for(self, repo: str) -> Store:
        first = repo.split("/", 1)[0]
        return self.stores.get(f"/{first}", self.default)

    def routes_to(self, repo: str, store: Store) -> bool:
        return self.store_for(repo) is store


def _driver(cfg: StorageConfig) -> StorageDriver:
    if cfg.storage_driver is not None:
        from ..storage.s3 import S3Driver  # aioboto3 only where S3 is configured

        return MeasuredDriver(S3Driver(cfg.storage_driver))
    return MeasuredDriver(LocalDriver(cfg.local_root, commit=cfg.commit))


def _make_store(cfg: StorageConfig, locks: Locks, route: str, redis_url: str | None) -> Store:
    driver = _driver(cfg)
    holders = None
    if cfg.dedupe:
        # Local disk dedupes by hard link; S3 by reference.  A local filesystem without
        # hard links (some network and FUSE ones) gets no dedupe rather than failing pushes.
        if driver.supports_links or driver.name == "s3":
            holders = open_cache(cfg.cache_driver, cfg.holder_index_dir, route)
        else:
            log.warning("store %s: %s cannot hold hard links, so dedupe is off", route or "/", cfg.local_root)
    return Store(driver, cfg, locks, route, holders, redis_url)
