"""The holder index interface and the factory that reads zot's `cacheDriver` block."""

from __future__ import annotations

from typing import Protocol

from ..config import CacheDriverConfig, EmbeddedCacheConfig, RedisCacheConfig
from ..metrics import HOLDER_INDEX


class HolderIndex(Protocol):
    name: str

    async def add(self, digest: str, path: str) -> None:
        """Record a holder; the first holder of a digest is its original."""

    async def original(self, digest: str) -> str | None: ...

    async def holders(self, digest: str) -> list[str]:
        """Every holder, the original first."""

    async def remove(self, digest: str, path: str) -> None:
        """Forget a holder; when it was the original another holder becomes the original."""

    async def close(self) -> None: ...


class NamespacedCache:
    """One store's view of a cache that several stores may share (a Redis or DynamoDB, or one
    SQLite file when S3 stores name the same local directory): its digests are its own, so a
    store never judges, or drops, another store's holders. The default store's keys are the
    plain digests. Lookups of an original are counted here, whatever the backend."""

    def __init__(self, inner: HolderIndex, namespace: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.prefix = f"{namespace}|" if namespace else ""

    async def add(self, digest: str, path: str) -> None:
        await self.inner.add(self.prefix + digest, path)

    async def original(self, digest: str) -> str | None:
        try:
            found = await self.inner.original(self.prefix + digest)
        except Exception:
            HOLDER_INDEX.labels("error").inc()
            raise
        HOLDER_INDEX.labels("hit" if found is not None else "miss").inc()
        return found

    async def holders(self, digest: str) -> list[str]:
        return await self.inner.holders(self.prefix + digest)

    async def remove(self, digest: str, path: str) -> None:
        await self.inner.remove(self.prefix + digest, path)

    async def close(self) -> None:
        await self.inner.close()


def open_cache(config: CacheDriverConfig | None, root_directory: str, namespace: str = "") -> HolderIndex:
    """The holder index a store's settings name (the embedded one when none is named).

    `namespace` tells stores apart (the subPaths route).
    """
    return NamespacedCache(_open(config, root_directory), namespace)


def _open(config: CacheDriverConfig | None, root_directory: str) -> HolderIndex:
    if config is None or isinstance(config, EmbeddedCacheConfig):
        from .embedded import EmbeddedCache

        return EmbeddedCache(config.rootdir if config is not None and config.rootdir else root_directory)
    if isinstance(config, RedisCacheConfig):
        from .redis_cache import RedisCache

        return RedisCache(config.target, config.keyprefix)
    from .dynamodb import DynamoDBCache

    return DynamoDBCache(config)
