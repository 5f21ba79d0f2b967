"""Request bodies as plain async byte iterators, so `shared/` never sees Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from ocistore.errors import ErrorCode, RegistryError
from ocistore.wire import wire_int


async def chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    length = wire_int(value.strip())
    if length is None:
        raise RegistryError(ErrorCode.SIZE_INVALID, {"Content-Length": value[:40]},
                            message="Content-Length must be at most 19 ASCII digits")
    return length


async def read_limited(request: Request, limit: int, too_large: RegistryError) -> bytes:
    """The whole body, refusing (before reading it all) one larger than `limit`."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise too_large
    parts: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)
