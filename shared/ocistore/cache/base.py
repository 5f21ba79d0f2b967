"""The holder index interface and the factory that reads zot's `cacheDriver` block."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from ..config import CacheDriverConfig, EmbeddedCacheConfig, RedisCacheConfig
from ..errors import ErrorCode, RegistryError
from ..logs import Sparse
from ..metrics import HOLDER_INDEX

T = TypeVar("T")
log = logging.getLogger("ocistore.cache")
# What a backend raises when it cannot be reached or refuses (a Redis or DynamoDB that is down,
# missing credentials, a locked or unwritable SQLite file): an outage, not a bug.
OUTAGES: tuple[type[BaseException], ...] = (OSError, TimeoutError, sqlite3.Error, RedisError, BotoCoreError,
                                            ClientError)


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
        self._say = Sparse(60.0)

    async def _reach(self, call: Awaitable[T]) -> T:
        """`call`, with an outage of the backend answered as the spec's 503 (the request that
        needed the index fails whole, and says why) rather than as an internal error."""
        try:
            return await call
        except OUTAGES as exc:
            if self._say.due("outage"):
                log.warning("the %s holder index (dedupe cache) is unreachable: %s: %s", self.name,
                            type(exc).__name__, exc)
            raise RegistryError(ErrorCode.UNAVAILABLE, {"cache": self.name}, headers={"Retry-After": "30"},
                                message=f"the {self.name} dedupe cache is unreachable") from exc

    async def add(self, digest: str, path: str) -> None:
        await self._reach(self.inner.add(self.prefix + digest, path))

    async def original(self, digest: str) -> str | None:
        try:
            found = await self._reach(self.inner.original(self.prefix + digest))
        except Exception:
            HOLDER_INDEX.labels("error").inc()
            raise
        HOLDER_INDEX.labels("hit" if found is not None else "miss").inc()
        return found

    async def holders(self, digest: str) -> list[str]:
        return await self._reach(self.inner.holders(self.prefix + digest))

    async def remove(self, digest: str, path: str) -> None:
        await self._reach(self.inner.remove(self.prefix + digest, path))

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
