"""Scrub actors.  Import only after `ocistore.messaging.setup_broker`.

One `scrub_pass` walks every store (the algorithm is `ocistore.scrub`); a ticker enqueues
one per `extensions.scrub.interval` across all scrub-workers.  Passes never overlap: a
pass holds the `scrub:pass` lock, so a slow pass delays the next instead of doubling load.
"""

from __future__ import annotations

import logging

import dramatiq

from ocistore.config import Config
from ocistore.events import SCRUB_PASS
from ocistore.locks import locks_for
from ocistore.registry import Registry
from ocistore.scrub import scrub_store
from ocistore.units import parse_rate
from ocistore.workers import Ticker

from . import DEFAULT_RATE

log = logging.getLogger("ocistore.scrub")

_DAY_MS = 24 * 3600 * 1000
DEFAULT_PACE = parse_rate(DEFAULT_RATE)


class _Context:
    registry: Registry | None = None
    pace_bytes_per_s: float | None = None


_ctx = _Context()


def configure(config: Config, pace_bytes_per_s: float | None = DEFAULT_PACE) -> None:
    """Pace: bytes hashed a second at most (`--rate`, parsed by `ocistore.units.parse_rate`), None: no limit."""
    _ctx.registry = Registry.from_config(config)
    _ctx.pace_bytes_per_s = pace_bytes_per_s


@dramatiq.actor(actor_name="scrub_pass", queue_name="scrub", max_retries=3, time_limit=_DAY_MS)
async def scrub_pass() -> None:
    assert _ctx.registry is not None, "configure() first"
    for store in _ctx.registry.stores.values():
        async with store.locks.hold("scrub:pass"):
            report = await scrub_store(store, pace_bytes_per_s=_ctx.pace_bytes_per_s)
        log.info("scrub of %s done: %d problems", store.route or "/", len(report.findings))


def pass_ticker(config: Config, broker: dramatiq.Broker) -> Ticker | None:
    """Every scrub interval, one pass across all scrub-workers (none when scrub is off)."""
    if not config.scrub.enable:
        return None
    return Ticker(broker, SCRUB_PASS, config.scrub.interval, lambda: locks_for(config), "scrub:pass")
