"""A large blob written to a local store leaves only a few windows of itself in the page cache.

Write-behind (storage/writebehind.py) is what keeps a multi-GB push from filling the page
cache with dirty pages: an operator sees it as memory that stays flat during pushes. The
bytes must be exactly those written whatever happens, a filesystem that refuses write-out
control must still get them, and a write-out error must fail the write rather than vanish.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocistore.storage import writebehind
from ocistore.storage.local import LocalDriver
from ocistore.storage.writebehind import LAG, WINDOW

MIB = 1 << 20


@pytest.fixture
def disk_dir() -> Iterator[Path]:
    """A directory on a disk filesystem (the checkout's): tmpfs pages are never dropped."""
    path = Path(tempfile.mkdtemp(prefix=".writebehind-", dir=Path(__file__).resolve().parent))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _resident(path: Path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


async def _write(driver: LocalDriver, name: str, pieces: list[bytes], append: bool = False) -> None:
    writer = await driver.writer(name, append=append)
    try:
        for piece in pieces:
            await writer.write_parts([piece[: len(piece) // 2], piece[len(piece) // 2:]])
    except BaseException:
        await writer.cancel()
        raise
    await writer.close()


def test_a_large_write_keeps_only_a_few_windows_cached_and_every_byte(disk_dir: Path) -> None:
    driver = LocalDriver(str(disk_dir))
    pieces = [os.urandom(MIB) for _ in range(96)]
    asyncio.run(_write(driver, "blob", pieces))
    path = disk_dir / "blob"
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(b"".join(pieces)).digest()
    # read_bytes brought it back: measure a fresh write instead.
    asyncio.run(_write(driver, "blob2", pieces))
    assert _resident(disk_dir / "blob2") <= LAG + 2 * WINDOW


def test_an_upload_in_many_appends_is_dropped_behind_as_one(disk_dir: Path) -> None:
    """A chunked upload opens a writer per PATCH: each takes over where the last left off."""
    driver = LocalDriver(str(disk_dir))
    chunks = [[os.urandom(MIB) for _ in range(8)] for _ in range(10)]
    asyncio.run(_write(driver, "session", chunks[0]))
    for chunk in chunks[1:]:
        asyncio.run(_write(driver, "session", chunk, append=True))
    assert _resident(disk_dir / "session") <= LAG + 3 * WINDOW
    expected = b"".join(b"".join(chunk) for chunk in chunks)
    assert (disk_dir / "session").read_bytes() == expected


def _refusing(code: int) -> Callable[[int, int, int, int], int]:
    def call(fd: int, offset: int, length: int, flags: int) -> int:
        ctypes.set_errno(code)
        return -1
    return call


def test_a_filesystem_without_write_out_control_still_gets_every_byte(
        disk_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writebehind, "_sync_file_range", _refusing(errno.EINVAL))
    driver = LocalDriver(str(disk_dir))
    pieces = [os.urandom(MIB) for _ in range(24)]
    asyncio.run(_write(driver, "blob", pieces))
    assert (disk_dir / "blob").read_bytes() == b"".join(pieces)


def test_a_write_out_error_fails_the_write(disk_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sync_file_range consumes the error it reports: swallowed, no later fsync would see it."""
    monkeypatch.setattr(writebehind, "_sync_file_range", _refusing(errno.EIO))
    driver = LocalDriver(str(disk_dir))
    with pytest.raises(OSError) as failure:
        asyncio.run(_write(driver, "blob", [os.urandom(MIB) for _ in range(24)]))
    assert failure.value.errno == errno.EIO
