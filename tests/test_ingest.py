"""A request body reaches storage whole, in order and hashed, while the next piece arrives.

`ingest.feed` overlaps receiving, hashing and writing; these tests hold it to what an upload
session relies on: the file and the hash cover exactly the bytes received, in order, whatever
the chunk sizes; what arrived before a client hung up is kept; and after a failed write
nothing more lands (a later piece after a gap would make the session's bytes wrong).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ocistore.registry.ingest import PIECE, TooLong, feed
from ocistore.storage import FileWriter
from ocistore.storage.local import IOV_MAX, LocalDriver


async def _chunks(parts: Sequence[bytes], then_fail: BaseException | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)  # let a flush in flight run, as the socket would
        yield part
    if then_fail is not None:
        raise then_fail


def _pieces(sizes: Sequence[int]) -> list[bytes]:
    return [os.urandom(size) for size in sizes]


@pytest.mark.parametrize("sizes", [
    [PIECE * 3 + 17],                                # one huge chunk
    [256 << 10] * 13 + [5],                          # socket-sized reads
    [1] * (IOV_MAX * 3 + 7),                         # a byte at a time: more parts than writev takes
    [7, PIECE - 7, PIECE, 1, PIECE * 2 - 1, 3],      # pieces cut across chunk edges
    [],                                              # an empty body
], ids=["huge", "socket-reads", "bytewise", "ragged", "empty"])
def test_the_file_and_the_hash_hold_exactly_the_bytes_received(tmp_path: Path, sizes: list[int]) -> None:
    async def run() -> None:
        driver = LocalDriver(str(tmp_path))
        body = _pieces(sizes)
        writer = await driver.writer("session")
        hasher = hashlib.sha256()
        received = await feed(writer, hasher, _chunks(body), None)
        await writer.close()
        expected = b"".join(body)
        assert received == writer.size == len(expected)
        assert (tmp_path / "session").read_bytes() == expected
        assert hasher.hexdigest() == hashlib.sha256(expected).hexdigest()

    asyncio.run(run())


def test_what_arrived_before_the_client_hung_up_is_written_and_hashed(tmp_path: Path) -> None:
    async def run() -> None:
        driver = LocalDriver(str(tmp_path))
        body = _pieces([300 << 10] * 9)
        writer = await driver.writer("session")
        hasher = hashlib.sha256()
        with pytest.raises(ConnectionResetError):
            await feed(writer, hasher, _chunks(body, ConnectionResetError()), None)
        await writer.close()
        expected = b"".join(body)
        assert (tmp_path / "session").read_bytes() == expected
        assert hasher.hexdigest() == hashlib.sha256(expected).hexdigest()

    asyncio.run(run())


def test_a_body_past_its_limit_stops_at_the_limit(tmp_path: Path) -> None:
    async def run() -> None:
        driver = LocalDriver(str(tmp_path))
        body = _pieces([PIECE, PIECE, PIECE])
        writer = await driver.writer("session")
        with pytest.raises(TooLong):
            await feed(writer, hashlib.sha256(), _chunks(body), PIECE * 2)
        await writer.close()
        assert (tmp_path / "session").stat().st_size <= PIECE * 2

    asyncio.run(run())


class _FailingWriter(FileWriter):
    """Accepts `good` writes, fails the next (a disk that filled up), then accepts again
    (space was freed): a writer that went on would leave a gap in the file."""

    def __init__(self, good: int) -> None:
        self.size = 0
        self.good = good
        self.calls = 0
        self.written: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.calls += 1
        if self.calls == self.good + 1:
            raise OSError(28, "No space left on device")
        self.written.append(data)
        self.size += len(data)

    async def close(self) -> None: ...

    async def cancel(self) -> None: ...

    async def discard(self) -> None: ...


def test_nothing_is_written_after_a_failed_write() -> None:
    async def run() -> None:
        body = _pieces([PIECE] * 6)
        writer = _FailingWriter(good=2)
        with pytest.raises(OSError, match="No space"):
            await feed(writer, hashlib.sha256(), _chunks(body), None)
        # Exactly the first two pieces, in order: nothing after the gap.
        assert writer.written == body[:2]
        assert writer.calls == 3

    asyncio.run(run())
