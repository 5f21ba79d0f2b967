"""Upload sessions: `<repo>/.uploads/<id>` files that grow until they become a blob.

The session's whole state is its file, so any replica can serve the next request.  A
blob is hashed once, while it is received; what makes that safe is three rules, all kept
here:

- one writer per session at a time, across replicas: every PATCH and the closing PUT hold
  the session's lock (`upload:<repo>/<id>`), and a second writer waits `SESSION_WAIT`, then
  gets 416 with the session's current range;
- a session file only grows: a refused chunk is discarded back to the offset it started
  from, so the first `n` bytes of a session never change once written;
- a running hash is kept per process with the byte count it covers.  By the two rules above
  it covers exactly the first `offset` bytes on storage whenever `offset` is at most the
  file's size, and only then is it used (the tail is read back from storage); a write that
  failed midway forgets it, and each request works on a copy.

So a finished blob is placed only when the bytes on storage hash to its digest.  A small
body that closes a session holding nothing yet (a monolithic POST+PUT, or a POST with the
digest) never reaches the session file: it is hashed in memory and, once it matches, written
straight to its blob, so a 4 KiB push stores its bytes once instead of writing, copying and
deleting them (docs/design.md, "Content addressing").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..digests import Digest, new_hasher
from ..errors import ErrorCode, RegistryError
from ..layout import UPLOAD_ID_RE, upload_path, uploads_dir
from ..locks import Lease, LeaseLost, LockTimeout
from ..names import is_valid_name
from ..storage import FileInfo, PathNotFound, is_storage_full
from .bodies import verify, whole_if_small
from .ingest import TooLong, feed
from .store import Store, UploadHash

# How long a second request to one session waits for the first to finish before its 416.
SESSION_WAIT = 5.0


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def _session_key(repo: str, upload_id: str) -> str:
    return f"{repo}\0{upload_id}"


def _lock_name(repo: str, upload_id: str) -> str:
    return f"upload:{repo}/{upload_id}"


def _check_id(repo: str, upload_id: str) -> str:
    if not UPLOAD_ID_RE.fullmatch(upload_id):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"uuid": upload_id})
    return upload_path(repo, upload_id)


def _range_refused(current: int, detail: dict[str, object], message: str) -> RegistryError:
    return RegistryError(ErrorCode.RANGE_INVALID, {"expected_start": current, **detail}, message=message,
                         headers={"Range": f"0-{max(current - 1, 0)}"})


async def start(store: Store, repo: str) -> str:
    """A new session, within the store's bounds (see `upload_quota`); the repository itself
    appears only once it holds a manifest."""
    await _admit(store, repo)
    # Counted before the first await, so concurrent POSTs cannot all pass the same check.
    store.upload_quota.opened(repo)
    upload_id = str(uuid.uuid4())
    try:
        writer = await store.driver.writer(upload_path(repo, upload_id))
        await writer.close()
    except BaseException:
        store.upload_quota.closed(repo)
        raise
    finally:
        store.upload_quota.created(repo)
    store.upload_hashes.put(_session_key(repo, upload_id), UploadHash(new_hasher(), 0))
    return upload_id


async def _admit(store: Store, repo: str) -> None:
    quota = store.upload_quota
    if quota.repository_full(repo):
        mark = quota.mark(repo)
        quota.recounted(repo, await reap_idle(store, repo), mark)
        if quota.repository_full(repo):
            raise _too_many(store, f"{quota.per_repository} upload sessions are open in this repository",
                            "maxUploadsPerRepository")
    if quota.store_full():
        if quota.may_recount_store():
            mark = quota.mark()
            quota.store_recounted({r: await reap_idle(store, r) for r in await store.walk_layouts()}, mark)
        if quota.store_full():
            raise _too_many(store, f"{quota.total} upload sessions are open in this store", "maxUploads")


def _too_many(store: Store, why: str, key: str) -> RegistryError:
    return RegistryError(ErrorCode.TOOMANYREQUESTS, {"limit": key},
                         message=f"{why}: finish or cancel some, or wait for idle ones to be reaped",
                         headers={"Retry-After": str(max(1, int(store.config.upload_idle_timeout / 10)))})


async def sessions(store: Store, repo: str) -> AsyncIterator[FileInfo]:
    """Every upload session of the repository; stray temp files of an interrupted monolithic
    upload count as sessions too."""
    try:
        names = await store.driver.list(uploads_dir(repo))
    except PathNotFound:
        return
    for name in names:
        if name.endswith("/"):
            continue
        try:
            yield await store.driver.stat(f"{uploads_dir(repo)}/{name}")
        except PathNotFound:
            continue


async def reap(store: Store, repo: str, session: FileInfo) -> bool:
    """Remove an abandoned session, unless a request is writing it (it holds the lock) or
    wrote it since `session` was read (checked again under the lock)."""
    upload_id = session.path.rsplit("/", 1)[-1]
    try:
        async with store.locks.hold(_lock_name(repo, upload_id), wait=0):
            try:
                now = await store.driver.stat(session.path)
            except PathNotFound:
                return False  # finished, cancelled or reaped meanwhile: not ours to count
            if (now.size, now.mtime) != (session.size, session.mtime):
                return False
            await _drop(store, session.path)
            store.upload_hashes.pop(_session_key(repo, upload_id))
    except LockTimeout:
        return False
    store.upload_quota.closed(repo)
    await store.locks.forget(_lock_name(repo, upload_id))
    return True


async def reap_idle(store: Store, repo: str) -> int:
    """Remove the repository's sessions idle past `uploadIdleTimeout`; how many are left."""
    cutoff = time.time() - store.config.upload_idle_timeout
    left = 0
    async for session in sessions(store, repo):
        if session.mtime > cutoff or not await reap(store, repo, session):
            left += 1
    return left


async def size(store: Store, repo: str, upload_id: str) -> int:
    return (await _session(store, repo, upload_id)).size


async def _session(store: Store, repo: str, upload_id: str) -> FileInfo:
    try:
        return await store.driver.stat_file(_check_id(repo, upload_id))
    except PathNotFound:
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"uuid": upload_id}) from None


@asynccontextmanager
async def _sole_writer(store: Store, repo: str, upload_id: str) -> AsyncIterator[tuple[FileInfo, Lease]]:
    """Hold the session's lock; yields its file, read under the lock, and the lease.

    A session that does not exist leaves no lock behind (on one host a lock is a file of its
    own per session: requests for made-up ids must not fill the store with them).
    """
    name = _lock_name(repo, upload_id)
    unknown = False
    try:
        async with store.locks.hold(name, wait=SESSION_WAIT) as lease:
            try:
                session = await _session(store, repo, upload_id)
            except RegistryError:
                unknown = True
                raise
            yield session, lease
    except LockTimeout:
        current = await size(store, repo, upload_id)
        raise _range_refused(current, {}, "another request is writing this upload session") from None
    finally:
        if unknown:
            await store.locks.forget(name)


async def append(store: Store, repo: str, upload_id: str, chunks: AsyncIterator[bytes],
                 content_range: ContentRange | None = None, content_length: int | None = None) -> int:
    """Append a chunk; returns the session's new size.

    A `Content-Range` must start at the current size and agree with `Content-Length` and
    with the bytes that actually arrive; otherwise the chunk is refused with 416 and the
    session is left as it was.
    """
    async with _sole_writer(store, repo, upload_id) as (session, lease):
        return await _append(store, repo, upload_id, session.size, lease, chunks, content_range, content_length)


async def _append(store: Store, repo: str, upload_id: str, current: int, lease: Lease,
                  chunks: AsyncIterator[bytes], content_range: ContentRange | None,
                  content_length: int | None) -> int:
    path = upload_path(repo, upload_id)
    declared: int | None = None
    if content_range is not None:
        length_ok = content_length is None or content_range.length == content_length
        if content_range.start != current or content_range.end < content_range.start or not length_ok:
            raise _range_refused(current, {"content_range": f"{content_range.start}-{content_range.end}"},
                                 "chunk does not continue the upload")
        declared = content_range.length
    key = _session_key(repo, upload_id)
    # A copy: the kept hash still covers the first `current` bytes whatever happens next.
    state = await _hash_up_to(store, key, path, current)
    writer = await store.driver.writer(path, append=True)
    try:
        received = await feed(writer, state.hasher, chunks, declared)
    except TooLong:
        await writer.discard()
        raise _range_refused(current, {"content_range": f"{current}-{current + (declared or 0) - 1}"},
                             "the body is longer than its Content-Range") from None
    except BaseException as exc:
        if is_storage_full(exc):
            # Part of a chunk on a full disk only keeps it full: the client sends it again.
            await writer.discard()
            raise
        # What arrived stays (a client that hung up resumes from it); the kept hash covers a prefix.
        await writer.close()
        raise
    if declared is not None and received != declared:
        await writer.discard()
        raise _range_refused(current, {"content_range": f"{current}-{current + declared - 1}",
                                       "received": received}, "the body is shorter than its Content-Range")
    try:
        lease.check()  # another writer may own the session now: its bytes, not these, stand
    except LeaseLost:
        await writer.discard()
        raise
    await writer.close()
    store.upload_hashes.put(key, UploadHash(state.hasher, writer.size))
    return writer.size


async def _hash_up_to(store: Store, key: str, path: str, offset: int, algorithm: str = "sha256") -> UploadHash:
    """A hash of the file's first `offset` bytes, re-reading only what the kept hash lacks.

    Returns a state of its own: the kept one is copied, never shared between requests.
    """
    kept = store.upload_hashes.get(key)
    if algorithm != "sha256" or kept is None or kept.offset > offset:
        state = UploadHash(new_hasher(algorithm), 0)
    else:
        state = UploadHash(kept.hasher.copy(), kept.offset)
    if state.offset < offset:
        async for chunk in store.driver.read_stream(path, state.offset, offset - state.offset):
            await asyncio.to_thread(state.hasher.update, chunk)
        state.offset = offset
    return state


async def finish(store: Store, repo: str, upload_id: str, digest: Digest,
                 chunks: AsyncIterator[bytes] | None = None, content_range: ContentRange | None = None,
                 content_length: int | None = None) -> None:
    """Append a last chunk, check the digest, and make the session the repository's blob.

    The last chunk is held to the same rules as a PATCH (416 when out of order).  On a
    digest mismatch the session is dropped and no blob appears.
    """
    path = _check_id(repo, upload_id)
    key = _session_key(repo, upload_id)
    async with _sole_writer(store, repo, upload_id) as (session, lease):
        whole = None
        if chunks is not None and session.size == 0 and content_range is None and not store.driver.moves_are_cheap:
            whole, chunks = await whole_if_small(chunks, content_length)
        if whole is not None:
            # Nothing of it is on storage: hashed here, written once to its blob, if it matches.
            store.upload_hashes.pop(key)
            mismatch = await verify(digest, whole)
            if mismatch is None:
                lease.check()
                await store.blobs.place_bytes(repo, digest, whole)
            await store.driver.delete_file(path, session)
            store.upload_quota.closed(repo)
        else:
            total = session.size
            if chunks is not None:
                total = await _append(store, repo, upload_id, session.size, lease, chunks, content_range,
                                      content_length)
            state = await _hash_up_to(store, key, path, total, digest.algorithm)
            store.upload_hashes.pop(key)
            if state.hasher.hexdigest() != digest.encoded:
                await _drop(store, path)
                store.upload_quota.closed(repo)
                mismatch = RegistryError(ErrorCode.DIGEST_INVALID, {"digest": str(digest)})
            else:
                mismatch = None
            if mismatch is None:
                lease.check()
                await store.blobs.place(repo, digest, path, total)
                store.upload_quota.closed(repo)
    # The session is over either way (placed, or dropped on a mismatch): its lock goes too.
    await store.locks.forget(_lock_name(repo, upload_id))
    if mismatch is not None:
        raise mismatch


async def monolithic(store: Store, repo: str, digest: Digest, chunks: AsyncIterator[bytes]) -> None:
    """A whole blob in one request: hashed while written (in memory when small), placed only if
    it matches."""
    whole = None
    if not store.driver.moves_are_cheap:
        whole, chunks = await whole_if_small(chunks, None)
    if whole is not None:
        if mismatch := await verify(digest, whole):
            raise mismatch
        await store.blobs.place_bytes(repo, digest, whole)
        return
    path = upload_path(repo, str(uuid.uuid4()))
    writer = await store.driver.writer(path)
    hasher = digest.hasher()
    try:
        await feed(writer, hasher, chunks, None)
        await writer.close()
    except BaseException:
        await writer.cancel()
        raise
    if hasher.hexdigest() != digest.encoded:
        await _drop(store, path)
        raise RegistryError(ErrorCode.DIGEST_INVALID, {"digest": str(digest)})
    await store.blobs.place(repo, digest, path, writer.size)


async def mount(store: Store, repo: str, digest: Digest, from_repo: str | None,
                readable: Callable[[str], bool] | None = None) -> bool:
    """Make `repo` hold a blob another repository of the store holds; False when none does.

    Without `from_repo` (spec 1.1) the blob may come from anywhere in the store the caller
    may read (`readable`; None: everywhere): the holder index's original, or any repository
    that holds it. With access control the holder index's original may be one the caller
    must not read, so only the readable layouts are looked in (the CVE-2024-39897 class:
    a digest alone must never copy another repository's blob). Reading `from_repo` is the
    caller's to have checked.
    """
    if from_repo is not None:
        if not is_valid_name(from_repo) or from_repo == repo:
            return False
        return await store.blobs.mount(repo, digest, [from_repo])
    if store.blobs.holders is not None and readable is None:
        return await store.blobs.mount(repo, digest, None)
    # Every layout holding blobs, not only repositories with a manifest yet (index.json).
    return await store.blobs.mount(repo, digest, [r for r in await store.walk_layouts()
                                                  if r != repo and (readable is None or readable(r))])


async def cancel(store: Store, repo: str, upload_id: str) -> None:
    path = _check_id(repo, upload_id)
    async with _sole_writer(store, repo, upload_id):
        store.upload_hashes.pop(_session_key(repo, upload_id))
        try:
            await store.driver.delete(path)
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"uuid": upload_id}) from None
    store.upload_quota.closed(repo)
    await store.locks.forget(_lock_name(repo, upload_id))


async def _drop(store: Store, path: str) -> None:
    try:
        await store.driver.delete(path)
    except PathNotFound:
        pass
