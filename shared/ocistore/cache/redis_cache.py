"""The Redis cache: one sorted set per digest, scored by when each holder arrived.

The lowest score is the original, so promotion on removal needs no extra bookkeeping.
Keys follow zot's `keyprefix` (default `ocistore`).
"""

from __future__ import annotations

import time
from typing import Any


class RedisCache:
    name = "redis"

    def __init__(self, url: str, prefix: str = "ocistore") -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._prefix = prefix

    def _key(self, digest: str) -> str:
        return f"{self._prefix}:dedupe:{digest}"

    async def add(self, digest: str, path: str) -> None:
        await self._redis.zadd(self._key(digest), {path: time.time()}, nx=True)

    async def original(self, digest: str) -> str | None:
        first = await self._redis.zrange(self._key(digest), 0, 0)
        return first[0].decode() if first else None

    async def holders(self, digest: str) -> list[str]:
        return [p.decode() for p in await self._redis.zrange(self._key(digest), 0, -1)]

    async def remove(self, digest: str, path: str) -> None:
        await self._redis.zrem(self._key(digest), path)

    async def close(self) -> None:
        await self._redis.aclose()
