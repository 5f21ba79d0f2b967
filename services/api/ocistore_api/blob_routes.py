"""Blob HEAD, GET (with `Range`) and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.events import EventName
from ocistore.registry import Store
from ocistore.storage import PathNotFound

from . import sendfile
from .events import emit
from .ranges import parse_range
from .responses import API_VERSION, empty


async def get_blob(request: Request, store: Store, name: str, ref: str) -> Response:
    digest = Digest.parse(ref)
    blob = await store.blobs.stat(name, digest)
    info = blob.info
    headers = {
        **API_VERSION,
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest}"',
    }
    span = parse_range(request.headers.get("range"), info.size)
    status, offset, length = 200, 0, info.size
    if span is not None:
        status, offset, length = 206, span[0], span[1] - span[0] + 1
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{info.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if sendfile.offered(request.scope):
        try:
            fd = await store.blobs.open_local(blob)
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None
        if fd is not None:
            return sendfile.ZeroCopyResponse(fd, offset, length, status, headers)
    return StreamingResponse(store.blobs.read(blob, offset, length), status, headers)


async def delete_blob(request: Request, store: Store, name: str, ref: str) -> Response:
    digest = Digest.parse(ref)
    await store.blobs.delete(name, digest)
    emit(request, EventName.BLOB_DELETED, store, name, digest=str(digest))
    return empty(202)
