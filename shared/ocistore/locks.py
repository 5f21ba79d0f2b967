"""Named mutual exclusion: per repository around `index.json` and GC, per digest for dedupe.

The in-process implementation serves the single-process mode; replicas on several hosts
plug in a Redis implementation of the same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class Locks(Protocol):
    def hold(self, name: str) -> AbstractAsyncContextManager[None]: ...


class LocalLocks:
    """asyncio locks by name, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)
