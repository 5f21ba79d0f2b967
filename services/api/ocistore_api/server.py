"""Running the app under uvicorn, tuned for a registry: uvloop, httptools, no access log,
the connection limits of `connections` (uvicorn has none of its own for heads), and zot's
`http.tls` and `http.ratelimit`."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from ocistore.config import Config
from ocistore.logs import on_hangup
from ocistore.ratelimit import RateLimiter
from ocistore.tls import ServerTLS, TLSFileError

from .access_log import AccessLog
from .connections import Limits, fd_limit, protocol_class
from .ratelimit import RateLimit

log = logging.getLogger("ocistore")


def guarded(app: ASGIApp, config: Config) -> ASGIApp:
    """The app behind zot's rate limits (as zot's router applies them first); the access log
    outside all, so every answer is logged, refusals included. Client certificates are judged
    with every other credential, by `auth.guard`."""
    http = config.http
    if http.ratelimit is not None:
        limiter = RateLimiter(http.ratelimit)
        if limiter:
            app = RateLimit(app, limiter)
    metrics = config.metrics
    return AccessLog(app, metrics.prometheus.path if metrics.enable else None)


def server_tls(config: Config) -> ServerTLS | None:
    """The TLS of `http.tls`, reloaded on SIGHUP as well as when its files change."""
    if config.http.tls is None:
        return None
    try:
        tls = ServerTLS(config.http.tls)
    except TLSFileError as exc:
        raise SystemExit(f"ocistore: {exc}") from None
    def recheck(config: Config | None) -> str:
        tls.request_reload()
        return "TLS files rechecked at the next handshake"

    on_hangup(recheck)
    return tls


def run(app: ASGIApp, config: Config) -> None:
    fds = fd_limit()
    limits = Limits.from_config(config.http, fds)
    tls = server_tls(config)
    factory: Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None
    if tls is not None:
        context = tls.context
        factory = lambda uvicorn_config, default: context  # noqa: E731
    log.info("listening on %s://%s:%d (at most %d connections; %d file descriptors)%s",
             "https" if tls else "http", config.http.address, config.http.port, limits.max_connections, fds,
             " asking clients for a certificate" if tls and tls.config.cacert else "")
    uvicorn.run(guarded(app, config), host=config.http.address, port=config.http.port, loop="uvloop",
                http=protocol_class(limits), ws="none", access_log=False, ssl_context_factory=factory,
                log_config=None, server_header=False, timeout_graceful_shutdown=10)
