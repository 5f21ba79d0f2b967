"""Small request bodies taken whole: a large blob is hashed while written (`ingest.feed`); a
small one that arrives whole in one request is held in memory instead (`whole_if_small`), so
it can be verified before anything is stored and then written once, straight to its blob.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..digests import Digest
from ..errors import ErrorCode, RegistryError
from .ingest import THREAD_HASH

# A whole blob up to this size is held in memory, hashed and written once, where it arrives in
# one request (16 concurrent pushes then hold 16 MiB at most).
SMALL_BLOB = 1 << 20


async def whole_if_small(chunks: AsyncIterator[bytes],
                          declared: int | None) -> tuple[bytes | None, AsyncIterator[bytes]]:
    """The whole body, when it is at most SMALL_BLOB bytes; else None and the body from its start.

    A client that hangs up during a small body leaves nothing behind: it sends it all again."""
    if declared is not None and declared > SMALL_BLOB:
        return None, chunks
    got: list[bytes] = []
    received = 0
    async for chunk in chunks:
        got.append(chunk)
        received += len(chunk)
        if received > SMALL_BLOB:
            return None, _chain(got, chunks)
    return b"".join(got), chunks


async def _chain(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk


async def verify(digest: Digest, data: bytes) -> RegistryError | None:
    """DIGEST_INVALID unless `data` hashes to `digest`."""
    hasher = digest.hasher()
    if len(data) >= THREAD_HASH:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)
    return None if hasher.hexdigest() == digest.encoded else RegistryError(
        ErrorCode.DIGEST_INVALID, {"digest": str(digest)})
