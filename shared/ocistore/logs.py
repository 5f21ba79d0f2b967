"""Logging set-up shared by every entry point, from the config's `log` section."""

from __future__ import annotations

import logging
import sys
import time

from .config import Config

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


class Sparse:
    """A log line per key at most once per `every` seconds, however often its cause recurs
    (a damaged blob pulled in a loop must not flood the log)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def due(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.every:
            return False
        self._last[key] = now
        return True


class OncePerOutage(logging.Filter):
    """Dramatiq's consumers log a connection error every few seconds while Redis is down, on
    every queue: the first gets through, then one a `quiet` interval, so an outage is one
    line in the log rather than thousands."""

    def __init__(self, quiet: float = 300.0) -> None:
        super().__init__()
        self.quiet = quiet
        self._last = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("dramatiq") or "connection error" not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self._last < self.quiet:
            return False
        self._last = now
        return True


def setup_logging(config: Config) -> None:
    handler: logging.Handler = (
        logging.FileHandler(config.log.output) if config.log.output else logging.StreamHandler(sys.stderr)
    )
    logging.basicConfig(level=_LEVELS[config.log.level], handlers=[handler], force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Dramatiq logs every worker thread's start at INFO; keep it for debugging only.
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, _LEVELS[config.log.level]))
    handler.addFilter(OncePerOutage())
