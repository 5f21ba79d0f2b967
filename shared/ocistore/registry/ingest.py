"""Receiving a request body into storage: hashed and written while the next piece arrives.

A push is bound by three costs that can run side by side: reading the socket (the event
loop), hashing (hashlib drops the GIL on large buffers) and writing (the driver; the local
one writes in a thread). Done one after the other, a 256 MiB push spends most of its time
with two of them idle, and uvicorn stops reading the socket while the app is busy (its flow
control pauses past 64 KiB of unread body). So a piece is handed to a flush task, which hashes
it in a thread while the driver writes it, and the loop goes back to the socket at once. At
most one piece is in flight: the hash sees pieces in order, the writer too, and memory stays
at about two pieces per request.

What arrived before a failure (a client that hung up, a body longer than allowed) is still
hashed and written before the failure propagates, so an upload session keeps it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..digests import Hasher
from ..storage import FileWriter

PIECE = 1 << 20
# Below this, hashing inline is cheaper than the hop to a thread.
THREAD_HASH = 256 << 10


class TooLong(Exception):
    """The body went on past the length its Content-Range declared."""


def _hash_all(hasher: Hasher, parts: list[bytes]) -> None:
    for part in parts:
        hasher.update(part)


async def _flush(writer: FileWriter, hasher: Hasher, parts: list[bytes], size: int) -> None:
    """Hash `parts` and write them, the two at once when the piece is large. The parts are
    never joined here: the event loop's thread would pay for the copy."""
    if size < THREAD_HASH:
        _hash_all(hasher, parts)
        await writer.write_parts(parts)
        return
    hashed = asyncio.ensure_future(asyncio.to_thread(_hash_all, hasher, parts))
    try:
        await writer.write_parts(parts)
    finally:
        await hashed


async def feed(writer: FileWriter, hasher: Hasher, chunks: AsyncIterator[bytes], limit: int | None) -> int:
    """Hash and write everything `chunks` yields, at most `limit` bytes; returns the count."""
    parts: list[bytes] = []
    pending = 0
    received = 0
    in_flight: asyncio.Future[None] | None = None

    async def settle() -> None:
        nonlocal in_flight, parts, pending
        if in_flight is not None:
            flushing, in_flight = in_flight, None
            try:
                await flushing
            except BaseException:
                # A piece whose write failed ends it: what follows must not land after a gap.
                parts, pending = [], 0
                raise

    async def hand_off() -> None:
        nonlocal parts, pending, in_flight
        await settle()
        in_flight = asyncio.ensure_future(_flush(writer, hasher, parts, pending))
        parts, pending = [], 0

    try:
        async for chunk in chunks:
            received += len(chunk)
            if limit is not None and received > limit:
                parts, pending = [], 0
                raise TooLong
            parts.append(chunk)
            pending += len(chunk)
            if pending >= PIECE:
                await hand_off()
    finally:
        await settle()
        if pending:
            await _flush(writer, hasher, parts, pending)
    return received
