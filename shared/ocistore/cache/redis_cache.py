"""The Redis cache: one sorted set per digest, scored by the order holders arrived in.

The lowest score is the original, so promotion on removal needs no extra bookkeeping.  The
score is the set's own sequence (one more than its highest), given by Redis in one script:
never a replica's clock, which another replica's may disagree with.  Keys follow zot's
`keyprefix` (default `ocistore`).
"""

from __future__ import annotations

from typing import Any

# Adds a holder after every other (scores from a clock, as once written, still sort first).
_ADD = """
if redis.call('zscore', KEYS[1], ARGV[1]) then return 0 end
local last = redis.call('zrange', KEYS[1], -1, -1, 'WITHSCORES')
local score = 1
if last[2] then score = tonumber(last[2]) + 1 end
redis.call('zadd', KEYS[1], score, ARGV[1])
return 1
"""


class RedisCache:
    name = "redis"

    def __init__(self, url: str, prefix: str = "ocistore") -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._prefix = prefix

    def _key(self, digest: str) -> str:
        return f"{self._prefix}:dedupe:{digest}"

    async def add(self, digest: str, path: str) -> None:
        await self._redis.eval(_ADD, 1, self._key(digest), path)

    async def original(self, digest: str) -> str | None:
        first = await self._redis.zrange(self._key(digest), 0, 0)
        return first[0].decode() if first else None

    async def holders(self, digest: str) -> list[str]:
        return [p.decode() for p in await self._redis.zrange(self._key(digest), 0, -1)]

    async def remove(self, digest: str, path: str) -> None:
        await self._redis.zrem(self._key(digest), path)

    async def close(self) -> None:
        await self._redis.aclose()
