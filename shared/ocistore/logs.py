"""Logging set-up shared by every entry point, from the config's `log` section."""

from __future__ import annotations

import logging
import sys

from .config import Config

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


def setup_logging(config: Config) -> None:
    handler: logging.Handler = (
        logging.FileHandler(config.log.output) if config.log.output else logging.StreamHandler(sys.stderr)
    )
    logging.basicConfig(level=_LEVELS[config.log.level], handlers=[handler], force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Dramatiq logs every worker thread's start at INFO; keep it for debugging only.
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, _LEVELS[config.log.level]))
