"""Manifest HEAD, GET, PUT and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ocistore.errors import ErrorCode, RegistryError
from ocistore.events import EventName
from ocistore.mediatypes import INDEXES
from ocistore.registry import Store, manifests

from .body import read_limited
from .events import emit
from .responses import API_VERSION, empty

_TOO_LARGE = RegistryError(ErrorCode.MANIFEST_TOO_LARGE, {"limit": manifests.MAX_MANIFEST_BYTES})


def _accepts(request: Request, media_type: str) -> bool:
    """Whether the client's `Accept` admits the stored type (no header admits anything)."""
    # Go clients send each type as a header line of its own: all lines count.
    accept = ",".join(request.headers.getlist("accept"))
    if not accept:
        return True
    offered = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return media_type in offered or "*/*" in offered or "application/*" in offered or (
        # Clients that ask for a single image still want to learn that a tag is an index.
        media_type in INDEXES and bool(offered & INDEXES)
    )


async def get_manifest(request: Request, store: Store, name: str, ref: str) -> Response:
    head = request.method == "HEAD"
    m = await manifests.get_manifest(store, name, ref, with_body=not head)
    if not _accepts(request, m.media_type):
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN,
                            {"reference": ref, "mediaType": m.media_type, "reason": "excluded by Accept"})
    headers = {
        **API_VERSION,
        "Docker-Content-Digest": str(m.digest),
        "Content-Type": m.media_type,
        "Content-Length": str(m.size),
        "ETag": f'"{m.digest}"',
    }
    return Response(m.body if m.body is not None else b"", 200, headers)


async def put_manifest(request: Request, store: Store, name: str, ref: str) -> Response:
    body = await read_limited(request, manifests.MAX_MANIFEST_BYTES, _TOO_LARGE)
    m, info, tags = await manifests.put_manifest(
        store, name, ref, body, request.headers.get("content-type"), request.query_params.getlist("tag")
    )
    headers = {"Location": f"/v2/{name}/manifests/{m.digest}", "Docker-Content-Digest": str(m.digest)}
    if info.subject:
        headers["OCI-Subject"] = info.subject
    emit(request, EventName.MANIFEST_PUT, store, name, digest=str(m.digest), mediaType=m.media_type,
         size=m.size, tags=tags, subject=info.subject)
    response = empty(201, headers)
    for tag in tags:
        response.headers.append("OCI-Tag", tag)
    return response


async def delete_manifest(request: Request, store: Store, name: str, ref: str) -> Response:
    await manifests.delete_manifest(store, name, ref)
    if ":" in ref:
        emit(request, EventName.MANIFEST_DELETED, store, name, digest=ref)
    else:
        emit(request, EventName.TAG_DELETED, store, name, tag=ref)
    return empty(202)
