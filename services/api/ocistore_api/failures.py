"""Every failure answered in the spec's error envelope, with the connection kept.

Handlers raise `RegistryError`s for what the client did.  What else escapes (a bug, a full
disk, the framework's own 404 and 405) must still answer `{"errors":[...]}` without a path
or a traceback in it; the log gets the details.  Starlette's outermost middleware answers an
unhandled exception with the handler registered for `Exception`, then re-raises it, and
uvicorn closes a connection whose application raised after answering: `KeepConnection`
swallows that re-raise once the answer is complete, so a keep-alive client goes on.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocistore.errors import ErrorCode, RegistryError
from ocistore.storage import is_storage_full

from .responses import error_response

log = logging.getLogger("ocistore.api")

def storage_failure(exc: OSError, store_route: str) -> RegistryError | None:
    """The wire error for a storage OSError the client should hear about, or None."""
    if is_storage_full(exc):
        where = store_route or "/"
        log.error("store %s is full: %s", where, exc.strerror)
        return RegistryError(ErrorCode.STORAGE_FULL, {"store": where},
                             message=f"the storage of store {where} is full", headers={"Retry-After": "60"})
    return None


async def unexpected(request: Request, exc: Exception) -> Response:
    """A failure nobody anticipated: logged with its traceback, answered without it."""
    if isinstance(exc, OSError) and (full := storage_failure(exc, "")) is not None:
        return error_response(full)
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(RegistryError(ErrorCode.UNKNOWN, message="internal error: see the registry's log"))


async def http_exception(request: Request, exc: Exception) -> Response:
    """The router's own answers (no such path, method not allowed) in the envelope."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(RegistryError(ErrorCode.METHOD_UNKNOWN, {"method": request.method},
                                            headers=dict(exc.headers or {})))
    if exc.status_code == 404:
        return error_response(RegistryError(ErrorCode.ENDPOINT_UNKNOWN, {"path": request.url.path}))
    return error_response(RegistryError(ErrorCode.UNKNOWN, message=str(exc.detail)))


class KeepConnection:
    """Drops an exception raised after the whole answer was sent (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracked(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if not complete:
                raise  # a half-sent answer cannot be mended: the connection must close
