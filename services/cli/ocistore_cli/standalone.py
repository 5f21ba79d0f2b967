"""The single-process mode: the whole registry in one process with embedded defaults.

This is the one module that wires services together; the services never import each
other.
"""

from __future__ import annotations

import logging

import uvicorn
from ocistore.config import Config
from ocistore.registry import Registry
from ocistore_api.app import create_app

log = logging.getLogger("ocistore")


def serve(config: Config) -> None:
    if config.storage.storage_driver is not None:
        raise SystemExit("storage.storageDriver is not implemented yet: refusing to serve from local disk instead")
    registry = Registry.from_config(config)
    app = create_app(registry)
    log.info("storing repositories in %s", registry.default.config.root_directory)
    log.info("listening on http://%s:%d", config.http.address, config.http.port)
    uvicorn.run(
        app,
        host=config.http.address,
        port=config.http.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
    )
