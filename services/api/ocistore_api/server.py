"""Running the app under uvicorn, tuned for a registry: uvloop, httptools, no access log,
and the connection limits of `connections` (uvicorn has none of its own for heads)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from ocistore.config import Config

from .connections import Limits, fd_limit, protocol_class

log = logging.getLogger("ocistore")


def run(app: FastAPI, config: Config) -> None:
    fds = fd_limit()
    limits = Limits.from_config(config.http, fds)
    log.info("listening on http://%s:%d (at most %d connections; %d file descriptors)",
             config.http.address, config.http.port, limits.max_connections, fds)
    uvicorn.run(app, host=config.http.address, port=config.http.port, loop="uvloop", http=protocol_class(limits),
                ws="none", access_log=False,
                log_config=None, server_header=False, timeout_graceful_shutdown=10)
