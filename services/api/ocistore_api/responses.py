"""Response helpers: every answer carries the API version header; errors the spec's body."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from ocistore.errors import RegistryError

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers={**API_VERSION, "Content-Length": "0", **(headers or {})})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  media_type: str = "application/json") -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return Response(data, status_code=status, media_type=media_type, headers={**API_VERSION, **(headers or {})})


def error_response(exc: RegistryError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)
