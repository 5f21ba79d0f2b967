"""Receiving a request body into storage: hashed and written while the next piece arrives.

A push is bound by three costs that can run side by side: reading the socket (the event
loop), hashing (hashlib drops the GIL on large buffers) and writing (the driver; the local
one writes in a thread). Done one after the other, a 256 MiB push spends most of its time
with two of them idle, and uvicorn stops reading the socket while the app is busy (its flow
control pauses past 64 KiB of unread body). So each piece goes to two chains, one hashing in
a thread and one writing, and the loop goes back to the socket at once. The chains wait for
nobody but their own previous piece: a piece that is slow to write does not hold the hash up,
nor the other way round, which on two cores was 40 % of the loop's time when the two went
in step. The hash sees pieces in order and the writer too; at most DEPTH pieces are in
flight, so memory stays at a few MiB per request.

What arrived before a failure (a client that hung up, a body longer than allowed) is still
hashed and written before the failure propagates, so an upload session keeps it; after a
failed write nothing more is written (a later piece after a gap would corrupt the session).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from ..digests import Hasher
from ..storage import FileWriter

PIECE = 1 << 20
# Pieces in flight on the two chains before the loop waits for the oldest.
DEPTH = 3
# Below this, hashing inline is cheaper than the hop to a thread.
THREAD_HASH = 256 << 10


class TooLong(Exception):
    """The body went on past the length its Content-Range declared."""


def _hash_all(hasher: Hasher, parts: list[bytes]) -> None:
    for part in parts:
        hasher.update(part)


class _Chains:
    """The hash chain and the write chain of one body; each link awaits its predecessor."""

    def __init__(self, writer: FileWriter, hasher: Hasher) -> None:
        self._writer = writer
        self._hasher = hasher
        self._hashed: asyncio.Future[None] | None = None
        self._written: asyncio.Future[None] | None = None
        self._in_flight: collections.deque[tuple[asyncio.Future[None], asyncio.Future[None]]] = collections.deque()

    async def add(self, parts: list[bytes]) -> None:
        """Queue `parts` on both chains, first waiting while DEPTH pieces are still in flight."""
        while len(self._in_flight) >= DEPTH:
            await self._settle_oldest()
        self._hashed = asyncio.ensure_future(self._hash(self._hashed, parts))
        self._written = asyncio.ensure_future(self._write(self._written, parts))
        self._in_flight.append((self._hashed, self._written))

    async def settle(self) -> None:
        """Wait for everything in flight; the first failure is raised once all links are done."""
        failure: BaseException | None = None
        while self._in_flight:
            try:
                await self._settle_oldest()
            except BaseException as exc:  # kept, raised once the chains are quiet
                failure = failure or exc
        if failure is not None:
            raise failure

    async def _settle_oldest(self) -> None:
        hashed, written = self._in_flight.popleft()
        try:
            await written
        finally:
            await hashed

    async def _hash(self, previous: asyncio.Future[None] | None, parts: list[bytes]) -> None:
        if previous is not None:
            await previous
        await asyncio.to_thread(_hash_all, self._hasher, parts)

    async def _write(self, previous: asyncio.Future[None] | None, parts: list[bytes]) -> None:
        if previous is not None:
            await previous  # a failed write fails every later one: no piece lands after a gap
        await self._writer.write_parts(parts)


async def feed(writer: FileWriter, hasher: Hasher, chunks: AsyncIterator[bytes], limit: int | None) -> int:
    """Hash and write everything `chunks` yields, at most `limit` bytes; returns the count."""
    parts: list[bytes] = []
    pending = 0
    received = 0
    chains = _Chains(writer, hasher)
    try:
        async for chunk in chunks:
            received += len(chunk)
            if limit is not None and received > limit:
                parts, pending = [], 0
                raise TooLong
            parts.append(chunk)
            pending += len(chunk)
            if pending >= PIECE:
                try:
                    await chains.add(parts)
                finally:
                    parts, pending = [], 0
    finally:
        try:
            if pending >= THREAD_HASH:
                await chains.add(parts)
        finally:
            await chains.settle()
        if 0 < pending < THREAD_HASH:
            # A small body, or a small tail, is cheaper hashed here than sent to a thread.
            _hash_all(hasher, parts)
            await writer.write_parts(parts)
    return received
