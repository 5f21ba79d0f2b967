"""zot's `http.ratelimit` in front of every route, as an ASGI middleware over
`ocistore.ratelimit` (per-client token buckets; see there for how they follow zot)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ocistore.errors import ErrorCode, RegistryError
from ocistore.ratelimit import RateLimiter

from .responses import error_response


class RateLimit:
    """Answers 429 TOOMANYREQUESTS, in the spec's envelope with Retry-After, past a limit."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        refusal = self.limiter.check(scope["method"], client[0] if client else None)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        error = RegistryError(ErrorCode.TOOMANYREQUESTS, {"rate": refusal.rate, "method": refusal.method},
                              message=refusal.describe(), headers={"Retry-After": str(refusal.retry_after)})
        await error_response(error)(scope, receive, send)
