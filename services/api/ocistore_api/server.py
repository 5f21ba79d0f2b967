"""Running the app under uvicorn, tuned for a registry: uvloop, httptools, no access log."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from ocistore.config import Config

log = logging.getLogger("ocistore")


def run(app: FastAPI, config: Config) -> None:
    log.info("listening on http://%s:%d", config.http.address, config.http.port)
    uvicorn.run(app, host=config.http.address, port=config.http.port, loop="uvloop", http="httptools",
                access_log=False, log_config=None, server_header=False, timeout_graceful_shutdown=10)
