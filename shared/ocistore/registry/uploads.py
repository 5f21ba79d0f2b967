"""Upload sessions: `<repo>/.uploads/<id>` files that grow until they become a blob.

The session's whole state is its file, so any replica can serve the next request.  A
blob is hashed once, while it is received: the running hash is kept in memory beside
its byte count, and at the end it is trusted only if the count equals the file's size
(otherwise the missing tail, or the whole file, is re-read).  Bytes are written in
1 MiB pieces; the hash of a piece and its write go to a thread when large.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .. import dedupe
from ..digests import Digest, Hasher, new_hasher
from ..errors import ErrorCode, RegistryError
from ..layout import UPLOAD_ID_RE, upload_path
from ..storage import FileWriter, PathNotFound
from .store import Store, UploadHash

PIECE = 1 << 20
THREAD_HASH = 256 << 10


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int


def _session_key(repo: str, upload_id: str) -> str:
    return f"{repo}\0{upload_id}"


def _check_id(repo: str, upload_id: str) -> str:
    if not UPLOAD_ID_RE.match(upload_id):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"uuid": upload_id})
    return upload_path(repo, upload_id)


async def start(store: Store, repo: str) -> str:
    await store.index.ensure(repo)
    upload_id = str(uuid.uuid4())
    writer = await store.driver.writer(upload_path(repo, upload_id))
    await writer.close()
    store.upload_hashes.put(_session_key(repo, upload_id), UploadHash(new_hasher(), 0))
    return upload_id


async def size(store: Store, repo: str, upload_id: str) -> int:
    try:
        return (await store.driver.stat(_check_id(repo, upload_id))).size
    except PathNotFound:
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"uuid": upload_id}) from None


async def _feed(writer: FileWriter, hasher: Hasher, chunks: AsyncIterator[bytes]) -> None:
    """Hash and write everything `chunks` yields; what arrived before a failure is kept."""
    buf: list[bytes] = []
    pending = 0

    async def flush() -> None:
        nonlocal buf, pending
        data = b"".join(buf)
        buf, pending = [], 0
        if len(data) >= THREAD_HASH:
            await asyncio.to_thread(hasher.update, data)
        else:
            hasher.update(data)
        await writer.write(data)

    try:
        async for chunk in chunks:
            buf.append(chunk)
            pending += len(chunk)
            if pending >= PIECE:
                await flush()
    finally:
        if pending:
            await flush()


async def append(store: Store, repo: str, upload_id: str, chunks: AsyncIterator[bytes],
                 content_range: ContentRange | None = None, content_length: int | None = None) -> int:
    """Append a chunk; returns the session's new size.

    A `Content-Range` must start at the current size and agree with `Content-Length`,
    otherwise the chunk is refused with 416 and the session is left as it was.
    """
    path = _check_id(repo, upload_id)
    current = await size(store, repo, upload_id)
    if content_range is not None:
        length_ok = content_length is None or content_range.end - content_range.start + 1 == content_length
        if content_range.start != current or content_range.end < content_range.start or not length_ok:
            raise RegistryError(
                ErrorCode.RANGE_INVALID,
                {"expected_start": current, "content_range": f"{content_range.start}-{content_range.end}"},
                message="chunk does not continue the upload",
                headers={"Range": f"0-{max(current - 1, 0)}"},
            )
    key = _session_key(repo, upload_id)
    state = await _hash_up_to(store, key, path, current)
    writer = await store.driver.writer(path, append=True)
    complete = False
    try:
        await _feed(writer, state.hasher, chunks)
        complete = True
    finally:
        await writer.close()
        if complete:
            state.offset = writer.size
            store.upload_hashes.put(key, state)
        else:
            # Hash and file may disagree after an interruption: let the end re-read.
            store.upload_hashes.pop(key)
    return writer.size


async def _hash_up_to(store: Store, key: str, path: str, offset: int, algorithm: str = "sha256") -> UploadHash:
    """A hash of the file's first `offset` bytes, re-reading only what the cache lacks."""
    state = store.upload_hashes.get(key)
    if algorithm != "sha256" or state is None or state.offset > offset:
        state = UploadHash(new_hasher(algorithm), 0)
    if state.offset < offset:
        async for chunk in store.driver.read_stream(path, state.offset, offset - state.offset):
            await asyncio.to_thread(state.hasher.update, chunk)
        state.offset = offset
    return state


async def finish(store: Store, repo: str, upload_id: str, digest: Digest,
                 chunks: AsyncIterator[bytes] | None = None) -> None:
    """Append a last chunk, check the digest, and make the session the repository's blob.

    On a mismatch the session is dropped and no blob appears.
    """
    path = _check_id(repo, upload_id)
    if chunks is not None:
        await append(store, repo, upload_id, chunks)
    total = await size(store, repo, upload_id)
    key = _session_key(repo, upload_id)
    state = await _hash_up_to(store, key, path, total, digest.algorithm)
    store.upload_hashes.pop(key)
    if state.hasher.hexdigest() != digest.encoded:
        await _drop(store, path)
        raise RegistryError(ErrorCode.DIGEST_INVALID, {"digest": str(digest)})
    await dedupe.place(store, repo, digest, path)


async def monolithic(store: Store, repo: str, digest: Digest, chunks: AsyncIterator[bytes]) -> None:
    """A whole blob in one request: hashed while written, placed only if it matches."""
    await store.index.ensure(repo)
    path = upload_path(repo, str(uuid.uuid4()))
    writer = await store.driver.writer(path)
    hasher = digest.hasher()
    try:
        await _feed(writer, hasher, chunks)
        await writer.close()
    except BaseException:
        await writer.cancel()
        raise
    if hasher.hexdigest() != digest.encoded:
        await _drop(store, path)
        raise RegistryError(ErrorCode.DIGEST_INVALID, {"digest": str(digest)})
    await dedupe.place(store, repo, digest, path)


async def cancel(store: Store, repo: str, upload_id: str) -> None:
    path = _check_id(repo, upload_id)
    store.upload_hashes.pop(_session_key(repo, upload_id))
    try:
        await store.driver.delete(path)
    except PathNotFound:
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"uuid": upload_id}) from None


async def _drop(store: Store, path: str) -> None:
    try:
        await store.driver.delete(path)
    except PathNotFound:
        pass
