"""The cache interface and the factory that reads zot's `cacheDriver` block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class BlobCache(Protocol):
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


def open_cache(raw: Mapping[str, Any] | None, root_directory: str) -> BlobCache:
    """The cache a store's settings name (the embedded one when none is named)."""
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
