"""The holder index interface and the factory that reads zot's `cacheDriver` block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


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


def cache_params(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in (raw or {}).items()}


class NamespacedCache:
    """One store's view of a cache that several stores may share (a Redis or DynamoDB, or one
    SQLite file when S3 stores name the same local directory): its digests are its own, so a
    store never judges, or drops, another store's holders."""

    def __init__(self, inner: HolderIndex, namespace: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.prefix = f"{namespace}|"

    async def add(self, digest: str, path: str) -> None:
        await self.inner.add(self.prefix + digest, path)

    async def original(self, digest: str) -> str | None:
        return await self.inner.original(self.prefix + digest)

    async def holders(self, digest: str) -> list[str]:
        return await self.inner.holders(self.prefix + digest)

    async def remove(self, digest: str, path: str) -> None:
        await self.inner.remove(self.prefix + digest, path)

    async def close(self) -> None:
        await self.inner.close()


def open_cache(raw: Mapping[str, Any] | None, root_directory: str, namespace: str = "") -> HolderIndex:
    """The cache a store's settings name (the embedded one when none is named).

    `namespace` tells stores apart (the subPaths route); the default store's keys are the
    plain digests.
    """
    cache = _open(raw, root_directory)
    return NamespacedCache(cache, namespace) if namespace else cache


def _open(raw: Mapping[str, Any] | None, root_directory: str) -> HolderIndex:
    params = cache_params(raw)
    name = str(params.get("name", "embedded")).lower()
    if name in ("embedded", "boltdb"):
        from .embedded import EmbeddedCache

        return EmbeddedCache(params.get("rootdir") or root_directory)
    if name == "redis":
        from .redis_cache import RedisCache

        return RedisCache(params["url"], str(params.get("keyprefix", "ocistore")))
    if name == "dynamodb":
        from .dynamodb import DynamoDBCache

        return DynamoDBCache(params)
    raise ValueError(f"cacheDriver.name: unknown cache driver {name!r} (embedded, boltdb, redis or dynamodb)")
