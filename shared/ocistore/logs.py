"""Logging set-up shared by every entry point, from the config's `log` section.

Lines are JSON in zot's format by default (`level`, `time`, `message`, then fields), so the
same log pipeline reads both registries; text when the output is a terminal or `log.format`
asks for it. Structured fields travel as `extra={"fields": {...}}`.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .config import Config, load_config

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


class Sparse:
    """A log line per key at most once per `every` seconds, however often its cause recurs
    (a damaged blob pulled in a loop must not flood the log)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._missed: dict[str, int] = {}

    def due(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.every:
            self._missed[key] = self._missed.get(key, 0) + 1
            return False
        self._last[key] = now
        return True

    def missed(self, key: str) -> int:
        """How often `key` was not due since it last was (call once it is due, for the line)."""
        return self._missed.pop(key, 0)


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


_ZOT_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
               logging.CRITICAL: "fatal"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class ZotJson(logging.Formatter):
    """One JSON object per line, as zerolog writes zot's: level, time, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "level": _ZOT_LEVELS.get(record.levelno, record.levelname.lower()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "message": record.getMessage(),
            "module": record.name,
            **_fields(record),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class Text(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        return line + "".join(f" {k}={v}" for k, v in fields.items()) if fields else line


class ProbeNoise(logging.Filter):
    """A TLS client probing a plain-HTTP port (skopeo does, before falling back) makes uvicorn
    warn `Invalid HTTP request received.`: not a fault of the server, so it goes to debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and record.levelno == logging.WARNING \
                and record.getMessage().startswith("Invalid HTTP request received"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def _formatter(config: Config, stream: Any) -> logging.Formatter:
    wanted = config.log.format
    if wanted is None:
        wanted = "text" if config.log.output is None and stream.isatty() else "json"
    return Text() if wanted == "text" else ZotJson()


def set_level(level: str) -> None:
    logging.getLogger().setLevel(_LEVELS[level])
    # Dramatiq logs every worker thread's start at INFO; keep it for debugging only.
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, _LEVELS[level]))


def setup_logging(config: Config) -> None:
    handler: logging.Handler = (
        logging.FileHandler(config.log.output) if config.log.output else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(_formatter(config, sys.stderr))
    logging.basicConfig(handlers=[handler], force=True)
    set_level(config.log.level)
    handler.addFilter(OncePerOutage())
    handler.addFilter(ProbeNoise())
    audit = logging.getLogger("ocistore.audit")
    audit.handlers.clear()
    audit.propagate = False
    if config.log.audit:
        # zot's audit log: every mutating request, in JSON whatever the main log's format.
        audit_handler = logging.FileHandler(config.log.audit)
        audit_handler.setFormatter(ZotJson())
        audit.addHandler(audit_handler)
        audit.setLevel(logging.INFO)


_RELOADERS: list[Callable[[Config | None], str | None]] = []


def on_hangup(reload: Callable[[Config | None], str | None]) -> None:
    """Have SIGHUP call `reload` with the reread config (None without a config file); what it
    returns says what it reloaded, for the log line."""
    _RELOADERS.append(reload)


def handle_signals(config_path: str | None) -> None:
    """SIGHUP rereads the config and applies what can change while running (the log level,
    and what `on_hangup` registered: TLS, authentication), logging what it did; SIGUSR1/2 are
    logged and ignored (their default action would end the process, and an operator sends
    them out of habit); SIGTERM and SIGINT end it cleanly, after the server drained."""

    def hangup(signum: int, frame: object) -> None:
        config: Config | None = None
        done: list[str] = []
        if config_path is not None:
            try:
                config = load_config(config_path)
            except Exception as exc:
                log.error("SIGHUP: %s not reloaded, the running settings stay: %s", config_path, exc)
                return
            before = logging.getLevelName(logging.getLogger().level).lower()
            done.append(f"log level {before} -> {config.log.level}")
        for reload in _RELOADERS:
            try:
                what = reload(config)
            except Exception as exc:
                log.error("SIGHUP: reloading failed, the running settings stay: %s", exc)
                continue
            if what:
                done.append(what)
        # Said under the more verbose of the two levels, so a quieter level still shows it.
        quieter = config is not None and _LEVELS[config.log.level] > logging.getLogger().level
        if config is not None and not quieter:
            set_level(config.log.level)
        log.warning("SIGHUP: reloaded %s: %s", config_path or "(no config file)", "; ".join(done) or "nothing")
        if config is not None and quieter:
            set_level(config.log.level)

    def stop(signum: int, frame: object) -> None:
        # uvicorn drains, then raises the signal again for the handler it found: this one, so
        # the process unwinds (closing the emitter, the workers) and exits 0 instead of dying.
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, hangup)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, frame: log.warning("signal %d ignored (SIGHUP reloads, SIGTERM stops)",
                                                              signum))


log = logging.getLogger("ocistore")
