"""Blob uploads: monolithic, chunked, mount; session status and cancel."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.events import EventName
from ocistore.registry import Store, uploads
from ocistore.wire import wire_int

from .auth import readable
from .body import chunks, content_length
from .events import emit
from .responses import empty

# ASCII digits only (`\d` would take any Unicode digit); each number is bounded by wire_int.
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/([0-9]+|\*))?")


def _session_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Docker-Upload-UUID": upload_id,
        "Range": f"0-{max(size - 1, 0)}",
    }


def _blob_created(request: Request, store: Store, name: str, digest: Digest) -> Response:
    emit(request, EventName.BLOB_COMMITTED, store, name, digest=str(digest))
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)})


def _digest_param(request: Request) -> Digest:
    value = request.query_params.get("digest")
    if not value:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required",
                            message="digest parameter missing")
    return Digest.parse(value)


async def start_upload(request: Request, store: Store, name: str, _: str) -> Response:
    params = request.query_params
    mount = params.get("mount")
    if mount is not None:
        digest = Digest.parse(mount)
        if await uploads.mount(store, name, digest, params.get("from"), readable(request)):
            return _blob_created(request, store, name, digest)
    elif "digest" in params:
        digest = _digest_param(request)
        await uploads.monolithic(store, name, digest, chunks(request))
        return _blob_created(request, store, name, digest)
    elif content_length(request):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID,
                            "a body on POST needs the digest query parameter")
    upload_id = await uploads.start(store, name)
    return empty(202, _session_headers(name, upload_id, 0))


async def upload_status(request: Request, store: Store, name: str, upload_id: str) -> Response:
    size = await uploads.size(store, name, upload_id)
    return empty(204, _session_headers(name, upload_id, size))


def _content_range(request: Request) -> uploads.ContentRange | None:
    header = request.headers.get("content-range")
    if header is None:
        return None
    m = _CONTENT_RANGE.fullmatch(header.strip())
    start, end = (wire_int(m.group(1)), wire_int(m.group(2))) if m else (None, None)
    total = m.group(3) if m else None
    if start is None or end is None or (total not in (None, "*") and wire_int(total) is None):
        raise RegistryError(ErrorCode.RANGE_INVALID, {"Content-Range": header[:80]},
                            message="malformed Content-Range")
    return uploads.ContentRange(start, end)


async def patch_upload(request: Request, store: Store, name: str, upload_id: str) -> Response:
    size = await uploads.append(store, name, upload_id, chunks(request), _content_range(request),
                                content_length(request))
    return empty(202, _session_headers(name, upload_id, size))


async def finish_upload(request: Request, store: Store, name: str, upload_id: str) -> Response:
    digest = _digest_param(request)
    length = content_length(request)
    body = chunks(request) if length or "chunked" in request.headers.get("transfer-encoding", "") else None
    await uploads.finish(store, name, upload_id, digest, body, _content_range(request), length)
    return _blob_created(request, store, name, digest)


async def cancel_upload(request: Request, store: Store, name: str, upload_id: str) -> Response:
    await uploads.cancel(store, name, upload_id)
    return empty(204)
