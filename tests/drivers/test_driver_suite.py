"""Behaviour every storage driver owes the registry logic.

Each test removes what it writes: the fixture fails a test that leaves files behind.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from ocistore.storage import PathNotFound, StorageDriver, VersionChanged
from tests.drivers.conftest import DriverFactory

Body = Callable[[StorageDriver], Awaitable[None]]


def run(make_driver: DriverFactory, body: Body) -> None:
    async def main() -> None:
        await body(make_driver())

    asyncio.run(main())


async def collect(driver: StorageDriver, path: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([c async for c in driver.read_stream(path, offset, length)])


def test_content_round_trip_and_replace(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        await d.put_content("r/a/file", b"one")
        assert await d.get_content("r/a/file") == b"one"
        await d.put_content("r/a/file", b"two!")
        assert await d.get_content("r/a/file") == b"two!"
        assert (await d.stat("r/a/file")).size == 4
        await d.delete("r")

    run(make_driver, body)


def test_a_fenced_replace_writes_only_over_the_version_read(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        await d.replace_content("r/index.json", b"v1", None)
        with pytest.raises(VersionChanged):
            await d.replace_content("r/index.json", b"created twice", None)
        v1 = await d.stat("r/index.json")
        await d.replace_content("r/index.json", b"v2 by another writer", v1)
        with pytest.raises(VersionChanged):
            await d.replace_content("r/index.json", b"v2 over a stale read", v1)
        assert await d.get_content("r/index.json") == b"v2 by another writer"
        await d.replace_content("r/index.json", b"v3", await d.stat("r/index.json"))
        assert await d.get_content("r/index.json") == b"v3"
        await d.delete("r")

    run(make_driver, body)


def test_missing_paths_are_path_not_found(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        for call in (d.get_content("nope"), d.stat("nope"), d.list("nope"), d.delete("nope"), d.move("nope", "x")):
            with pytest.raises(PathNotFound):
                await call
        with pytest.raises(PathNotFound):
            await collect(d, "nope")
        assert not await d.exists("nope")
        assert [f async for f in d.walk("nope")] == []

    run(make_driver, body)


def test_ranged_reads_of_a_large_file(make_driver: DriverFactory) -> None:
    data = os.urandom(3 * (1 << 20) + 17)

    async def body(d: StorageDriver) -> None:
        w = await d.writer("big")
        for i in range(0, len(data), 100_000):
            await w.write(data[i:i + 100_000])
        await w.close()
        assert await collect(d, "big") == data
        assert await collect(d, "big", 1_000_000, 2_500_000) == data[1_000_000:3_500_000]
        assert await collect(d, "big", len(data) - 5) == data[-5:]
        await d.delete("big")

    run(make_driver, body)


def test_writer_appends_across_sessions_and_cancel_drops(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        w = await d.writer("u/session")
        await w.write(b"abc")
        await w.close()
        w = await d.writer("u/session", append=True)
        assert w.size == 3
        await w.write(b"def")
        await w.close()
        assert await d.get_content("u/session") == b"abcdef"
        w = await d.writer("u/other")
        await w.write(b"x")
        await w.cancel()
        assert not await d.exists("u/other")
        await d.delete("u")

    run(make_driver, body)


def test_list_stat_and_walk_show_the_tree(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        for p in ("t/a/1", "t/a/2", "t/b/c/3", "t/top"):
            await d.put_content(p, p.encode())
        assert sorted(await d.list("t")) == ["a/", "b/", "top"]
        assert (await d.stat("t/a")).is_dir
        assert not (await d.stat("t/top")).is_dir
        walked = sorted(f.path for f in [f async for f in d.walk("t")])
        assert walked == ["t/a/1", "t/a/2", "t/b/c/3", "t/top"]
        await d.delete("t/a")
        assert sorted(await d.list("t")) == ["b/", "top"]
        await d.delete("t")
        assert not await d.exists("t/top")

    run(make_driver, body)


def test_move_replaces_the_destination(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        await d.put_content("m/src", b"new")
        await d.put_content("m/dst", b"old")
        await d.move("m/src", "m/dst")
        assert await d.get_content("m/dst") == b"new"
        assert not await d.exists("m/src")
        await d.move("m/dst", "m/deeper/dir/dst")
        assert await d.get_content("m/deeper/dir/dst") == b"new"
        await d.delete("m")

    run(make_driver, body)


def test_a_link_keeps_its_bytes_when_the_source_goes(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        await d.put_content("l/a/blob", b"shared bytes")
        await d.link("l/a/blob", "l/b/blob")
        await d.delete("l/a/blob")
        assert await d.get_content("l/b/blob") == b"shared bytes"
        with pytest.raises(PathNotFound):
            await d.link("l/a/blob", "l/c/blob")
        await d.delete("l")

    run(make_driver, body)


def test_paths_cannot_leave_the_root(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        for bad in ("../escape", "a/../../escape", "/etc/passwd", "a\0b"):
            with pytest.raises(ValueError):
                await d.put_content(bad, b"x")

    run(make_driver, body)


def test_read_version_answers_bytes_with_their_version_and_nothing_while_unchanged(
        make_driver: DriverFactory) -> None:
    """What a remembered document (index.json) is checked with: the bytes come with the version
    they are, a read holding that version gets it back without bytes, and any other write shows."""
    async def body(d: StorageDriver) -> None:
        written = await d.replace_content("r/index.json", b"v1", None) or await d.stat("r/index.json")
        version, data = await d.read_version("r/index.json")
        assert data == b"v1" and version.size == 2
        same, nothing = await d.read_version("r/index.json", version)
        assert same is version and nothing is None
        same, nothing = await d.read_version("r/index.json", written)
        assert same is written and nothing is None  # what a write answers is a version reads know
        await d.put_content("r/index.json", b"v2 by another writer")
        newer, data = await d.read_version("r/index.json", version)
        assert data == b"v2 by another writer" and newer is not version
        with pytest.raises(VersionChanged):
            await d.replace_content("r/index.json", b"over a stale read", version)
        large, unread = await d.read_version("r/index.json", max_bytes=4)
        assert unread is None and large.size == len(b"v2 by another writer")
        for missing in ("r/nope", "r"):  # nothing, and a directory, are no file
            with pytest.raises(PathNotFound):
                await d.read_version(missing)
        await d.delete("r")

    run(make_driver, body)


def test_stat_file_and_delete_file_see_files_only(make_driver: DriverFactory) -> None:
    """A directory is no file to `stat_file`; `delete_file` removes a file as stat'ed, an
    appended-to one with all its pieces (the suite fails on anything left), and a gone one quietly."""
    async def body(d: StorageDriver) -> None:
        await d.put_content("r/dir/inner", b"x")
        with pytest.raises(PathNotFound):
            await d.stat_file("r/dir")
        assert (await d.stat_file("r/dir/inner")).size == 1
        for part in (b"first", b"second"):
            writer = await d.writer("r/grown", append=True) if await d.exists("r/grown") else await d.writer("r/grown")
            await writer.write(part)
            await writer.close()
        grown = await d.stat_file("r/grown")
        assert grown.size == len(b"firstsecond")
        await d.delete_file("r/grown", grown)
        await d.delete_file("r/grown", grown)
        assert not await d.exists("r/grown")
        await d.delete_file("r/dir/inner", await d.stat_file("r/dir/inner"))
        assert [f.path async for f in d.walk("r")] == []
        await d.remove_empty_dir("r/dir")

    run(make_driver, body)


def test_create_content_writes_only_where_no_file_is(make_driver: DriverFactory) -> None:
    async def body(d: StorageDriver) -> None:
        assert await d.create_content("r/doc", b"first")
        assert not await d.create_content("r/doc", b"second")
        assert await d.get_content("r/doc") == b"first"
        await d.delete("r")

    run(make_driver, body)
