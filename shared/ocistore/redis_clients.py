"""Redis clients, one per event loop.

`ocistore serve` runs the API and the in-process workers on event loops of their own, and a
redis.asyncio client (its connection pool) belongs to the loop that first used it: shared
across loops, its connections would be awaited on the wrong one.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis.asyncio


class LoopClients:
    """The client of the running loop, made on first use with `options` (those of from_url)."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self._options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = \
            weakref.WeakKeyDictionary()

    def get(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(self.url, **self._options)
            self._clients[loop] = client
        return client

    async def close(self) -> None:
        """Close the running loop's client; the other loops' go with their loops."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
