"""Each request observed once: its access line, zot's audit line if it mutates, its HTTP
series (`ocistore_http_*`), and the request id.

Outermost of the app, so a request refused by the rate limit or authentication is seen
like any other. The route is a bounded name (the endpoint's template, never the raw path),
so it serves as a metric label as well as a log field.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocistore.errors import RegistryError
from ocistore.metrics import HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUEST_BYTES, HTTP_REQUESTS, HTTP_RESPONSE_BYTES

from .paths import parse_path
from .sendfile import SENDFILE

access = logging.getLogger("ocistore.access")
audit = logging.getLogger("ocistore.audit")

_MUTATING = frozenset({"PUT", "POST", "PATCH", "DELETE"})
# A client's own id is kept if it is short and printable; anything else is replaced.
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_TEMPLATES = {
    "manifest": "/v2/{name}/manifests/{reference}",
    "blob": "/v2/{name}/blobs/{digest}",
    "upload": "/v2/{name}/blobs/uploads/{session}",
    "tags": "/v2/{name}/tags/list",
    "referrers": "/v2/{name}/referrers/{digest}",
}
_FIXED = {"/v2/": "/v2/", "/v2": "/v2/", "/v2/_catalog": "/v2/_catalog", "/livez": "/livez", "/readyz": "/readyz",
          "/storage/usage": "/storage/usage", "/scrub/report": "/scrub/report"}


@dataclass(frozen=True)
class RouteOf:
    route: str
    repository: str | None = None
    reference: str | None = None


def route_of(path: str, metrics_path: str | None = None) -> RouteOf:
    """The endpoint a path is, as a bounded name: "other" for anything no route serves."""
    if path in _FIXED:
        return RouteOf(_FIXED[path])
    if path == "/" or path.startswith("/ui/"):
        return RouteOf("/ui/")  # the operators' page: one label for all its views
    if metrics_path is not None and path == metrics_path:
        return RouteOf(metrics_path)
    if path.startswith("/v2/"):
        try:
            r = parse_path(path + "/" if path.endswith("/blobs/uploads") else path)
        except RegistryError:
            return RouteOf("other")
        return RouteOf(_TEMPLATES[r.kind], r.name, r.arg or None)
    return RouteOf("other")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class AccessLog:
    def __init__(self, app: ASGIApp, metrics_path: str | None = None) -> None:
        self.app = app
        self.metrics_path = metrics_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        request_id = given if given is not None and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        counts = {"in": 0, "out": 0, "status": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            elif message["type"] == SENDFILE:
                counts["out"] += int(message["count"])
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            HTTP_IN_FLIGHT.dec()
            self._observe(scope, request_id, counts, time.perf_counter() - started)

    def _observe(self, scope: Scope, request_id: str, counts: dict[str, int], seconds: float) -> None:
        method = scope["method"]
        where = route_of(scope["path"], self.metrics_path)
        status = counts["status"] or 499  # none sent: the client went away first
        HTTP_REQUESTS.labels(method, where.route, str(status)).inc()
        HTTP_DURATION.labels(method, where.route).observe(seconds)
        if counts["in"]:
            HTTP_REQUEST_BYTES.labels(method, where.route).inc(counts["in"])
        if counts["out"]:
            HTTP_RESPONSE_BYTES.labels(method, where.route).inc(counts["out"])
        mutating = method in _MUTATING
        if not (access.isEnabledFor(logging.INFO) or (mutating and audit.handlers)):
            return
        client = scope.get("client")
        identity: Any = (scope.get("state") or {}).get("identity")
        fields: dict[str, Any] = {
            "method": method, "route": where.route, "repository": where.repository, "reference": where.reference,
            "status": status,
            "bytesIn": counts["in"], "bytesOut": counts["out"], "durationMs": round(seconds * 1000, 3),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "user": getattr(identity, "user", None), "requestId": request_id,
        }
        if access.isEnabledFor(logging.INFO):
            access.info("%s %s %d", method, scope["path"], fields["status"], extra={"fields": fields})
        if mutating and audit.handlers:
            audit.info("%s %s", method, scope["path"], extra={"fields": fields})
