"""One writer per upload session, and a blob committed only when its stored bytes hash to its digest.

These drive the upload functions directly with bodies whose pacing the test controls, so an
interleaving that once poisoned a digest (two PATCHes sharing one running hash while their
bytes interleaved on storage) is reproduced exactly, every run, with no timing luck.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocistore.blobstore.paths import blob_path
from ocistore.config import StorageConfig
from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.layout import upload_path
from ocistore.locks import FileLocks, LocalLocks, Locks
from ocistore.registry import Store, uploads
from ocistore.storage.local import LocalDriver

REPO = "test/sessions"


def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def make_store(root: Path, locks: Locks) -> Store:
    return Store(LocalDriver(str(root)), StorageConfig(root_directory=str(root), dedupe=False), locks)


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Paced:
    """A request body that yields its first half, then waits for `go` before the rest."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.go = asyncio.Event()
        self.halfway = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        half = len(self.data) // 2
        yield self.data[:half]
        self.halfway.set()
        await self.go.wait()
        yield self.data[half:]


@pytest.fixture(params=["host-files", "session-files", "in-process"])
def locks(request: pytest.FixtureRequest, tmp_path: Path) -> Locks:
    """A lock file per session (a store on S3 without Redis), the session's own file (a store
    on local disk, as `locks_for` makes it), or this process alone."""
    if request.param == "host-files":
        return FileLocks(str(tmp_path / "locks"))
    if request.param == "session-files":
        return FileLocks(str(tmp_path / "locks"), store_root=str(tmp_path / "data"))
    return LocalLocks()


def test_sessions_of_a_local_store_leave_no_lock_files(tmp_path: Path) -> None:
    """Creating a file costs more than a whole small push: a local store's sessions lock their
    own files, and the lock directory holds none of theirs, for made-up ids either."""
    locks = FileLocks(str(tmp_path / "locks"), store_root=str(tmp_path / "data"))

    async def scenario() -> None:
        store = make_store(tmp_path / "data", locks)
        for body in (b"a" * 10, b"b" * 5000):
            upload_id = await uploads.start(store, REPO)
            await uploads.append(store, REPO, upload_id, once(body))
            await uploads.finish(store, REPO, upload_id, digest(body))
        with pytest.raises(RegistryError) as unknown:
            await uploads.append(store, REPO, "0" * 8 + "-0000-0000-0000-" + "0" * 12, once(b"x"))
        assert unknown.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN
        with pytest.raises(RegistryError):
            await uploads.append(store, REPO, "../../escape", once(b"x"))

    asyncio.run(scenario())
    assert [p.name for p in (tmp_path / "locks").iterdir() if p.name.startswith("upload")] == []


def test_a_second_patch_waits_for_the_first_and_the_bytes_never_interleave(tmp_path: Path, locks: Locks) -> None:
    first, second = Paced(b"A" * 300_000), Paced(b"B" * 300_000)

    async def scenario() -> bytes:
        store = make_store(tmp_path / "data", locks)
        upload_id = await uploads.start(store, REPO)
        one = asyncio.create_task(uploads.append(store, REPO, upload_id, first.chunks()))
        await first.halfway.wait()
        two = asyncio.create_task(uploads.append(store, REPO, upload_id, second.chunks()))
        second.go.set()
        for _ in range(200):  # loop turns enough for an unexcluded second writer to reach its body
            await asyncio.sleep(0)
        assert not second.halfway.is_set(), "the second PATCH read its body while the first was writing"
        first.go.set()
        assert await one == 300_000
        assert await two == 600_000
        whole = first.data + second.data
        await uploads.finish(store, REPO, upload_id, digest(whole))
        return (tmp_path / "data" / blob_path(REPO, digest(whole))).read_bytes()

    assert asyncio.run(scenario()) == b"A" * 300_000 + b"B" * 300_000


def test_a_writer_that_waits_too_long_gets_416_and_the_session_is_unchanged(
        tmp_path: Path, locks: Locks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "SESSION_WAIT", 0.3)
    first = Paced(b"A" * 1000)

    async def scenario() -> None:
        store = make_store(tmp_path / "data", locks)
        upload_id = await uploads.start(store, REPO)
        one = asyncio.create_task(uploads.append(store, REPO, upload_id, first.chunks()))
        await first.halfway.wait()
        with pytest.raises(RegistryError) as refused:
            await uploads.append(store, REPO, upload_id, once(b"B" * 10), uploads.ContentRange(0, 9))
        assert refused.value.code is ErrorCode.RANGE_INVALID
        first.go.set()
        assert await one == 1000
        assert await uploads.size(store, REPO, upload_id) == 1000

    asyncio.run(scenario())


def test_a_body_longer_or_shorter_than_its_content_range_is_refused_and_discarded(
        tmp_path: Path, locks: Locks) -> None:
    async def scenario() -> None:
        store = make_store(tmp_path / "data", locks)
        upload_id = await uploads.start(store, REPO)
        assert await uploads.append(store, REPO, upload_id, once(b"x" * 100), uploads.ContentRange(0, 99)) == 100
        for body in (b"y" * 150, b"y" * 50):
            with pytest.raises(RegistryError) as refused:
                await uploads.append(store, REPO, upload_id, once(body), uploads.ContentRange(100, 199))
            assert refused.value.code is ErrorCode.RANGE_INVALID
            assert refused.value.headers["Range"] == "0-99"
            assert (tmp_path / "data" / upload_path(REPO, upload_id)).read_bytes() == b"x" * 100
        # The session goes on from where it was, and its blob is exactly what was accepted.
        assert await uploads.append(store, REPO, upload_id, once(b"z" * 100), uploads.ContentRange(100, 199)) == 200
        await uploads.finish(store, REPO, upload_id, digest(b"x" * 100 + b"z" * 100))

    asyncio.run(scenario())


def test_the_closing_put_with_an_out_of_order_chunk_answers_416(tmp_path: Path, locks: Locks) -> None:
    async def scenario() -> None:
        store = make_store(tmp_path / "data", locks)
        upload_id = await uploads.start(store, REPO)
        await uploads.append(store, REPO, upload_id, once(b"x" * 10), uploads.ContentRange(0, 9))
        with pytest.raises(RegistryError) as refused:
            await uploads.finish(store, REPO, upload_id, digest(b"x" * 20), once(b"x" * 10),
                                 uploads.ContentRange(5, 14), 10)
        assert refused.value.code is ErrorCode.RANGE_INVALID
        assert await uploads.size(store, REPO, upload_id) == 10

    asyncio.run(scenario())


def test_a_kept_hash_is_trusted_only_for_the_bytes_it_covers(tmp_path: Path, locks: Locks) -> None:
    """Another process (here: another Store, so another set of kept hashes) appends to the
    session; the first process must hash the tail it did not see from storage."""
    async def scenario() -> None:
        root = tmp_path / "data"
        a, b = make_store(root, locks), make_store(root, locks)
        upload_id = await uploads.start(a, REPO)
        await uploads.append(a, REPO, upload_id, once(b"1" * 5000))
        await uploads.append(b, REPO, upload_id, once(b"2" * 5000))
        await uploads.append(a, REPO, upload_id, once(b"3" * 5000))
        whole = b"1" * 5000 + b"2" * 5000 + b"3" * 5000
        with pytest.raises(RegistryError):
            await uploads.finish(a, REPO, upload_id, digest(b"1" * 5000 + b"3" * 5000))

        upload_id = await uploads.start(a, REPO)
        await uploads.append(a, REPO, upload_id, once(b"1" * 5000))
        await uploads.append(b, REPO, upload_id, once(b"2" * 5000))
        await uploads.append(a, REPO, upload_id, once(b"3" * 5000))
        await uploads.finish(a, REPO, upload_id, digest(whole))
        assert (root / blob_path(REPO, digest(whole))).read_bytes() == whole

    asyncio.run(scenario())
