"""Sharing one expensive read among callers that ask for it at the same time.

A caller never gets a result computed before it asked: callers arriving while a run is
in progress share the *next* run, which starts when the current one ends.  So a burst
of N catalog requests costs about two walks of the store instead of N, and each still
sees every repository created before its request arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    def __init__(self, compute: Callable[[], Awaitable[T]]) -> None:
        self._compute = compute
        self._running: asyncio.Future[T] | None = None
        self._next: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._running is None:
            self._running = asyncio.ensure_future(self._compute())
            self._running.add_done_callback(self._finished)
            return await asyncio.shield(self._running)
        if self._next is None:
            self._next = asyncio.ensure_future(self._after(self._running))
        return await asyncio.shield(self._next)

    async def _after(self, previous: asyncio.Future[T]) -> T:
        await asyncio.wait([previous])
        return await self._compute()

    def _finished(self, done: asyncio.Future[T]) -> None:
        self._running, self._next = self._next, None
        if self._running is not None:
            self._running.add_done_callback(self._finished)
