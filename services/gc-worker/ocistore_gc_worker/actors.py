"""GC and dedupe actors.  Import only after `ocistore.messaging.setup_broker`: actors
bind to the broker that is global at import time.

The algorithms are `ocistore.gc` and `ocistore.dedupe`; these actors only decide when
they run: a deletion schedules one GC of its repository `gcDelay` later (repeated
deletions collapse into that one), `gc_sweep` collects every repository of a store, and
`dedupe_reconcile` brings a store and its holder index in line after `dedupe` was switched.
A committed blob needs no job: the push records its holder before it is acknowledged (a
holder index that fails fails the push), so a per-blob job would only repeat that write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dramatiq

from ocistore.blobstore import reconcile
from ocistore.config import Config
from ocistore.events import DEDUPE_RECONCILE, GC_REPOSITORY, GC_SWEEP
from ocistore.gc import collect_repository, collect_store
from ocistore.gc_report import GCReport
from ocistore.locks import locks_for
from ocistore.messaging import enqueue, enqueue_eventually
from ocistore.registry import Registry, Store
from ocistore.workers import Ticker

log = logging.getLogger("ocistore.gc")

_DAY_MS = 24 * 3600 * 1000


class _Context:
    registry: Registry | None = None
    broker: dramatiq.Broker | None = None


_ctx = _Context()


def configure(config: Config, broker: dramatiq.Broker) -> None:
    _ctx.registry = Registry.from_config(config)
    _ctx.broker = broker


def _store(route: str) -> Store | None:
    assert _ctx.registry is not None, "configure() first"
    store = _ctx.registry.stores.get(route)
    return store if store is not None and store.config.gc else None


def _log(report: GCReport) -> None:
    if report.removed:
        log.info("gc %s: removed %d tags, %d manifests, %d blobs, %d uploads, %d bytes freed", report.repo,
                 0 if report.retention_dry_run else len(report.tags), len(report.manifests), len(report.blobs),
                 len(report.uploads), report.bytes_freed)


@dramatiq.actor(actor_name="gc_on_event", queue_name="gc", max_retries=5)
async def gc_on_event(event: dict[str, Any]) -> None:
    """A deletion: schedule a GC of its repository after `gcDelay`, unless one is pending."""
    store = _store(event["store"])
    if store is None or _ctx.broker is None:
        return
    repo = event["repo"]
    if await store.locks.try_claim(f"gc:{store.route}:{repo}", store.config.gc_delay + 60):
        enqueue(_ctx.broker, GC_REPOSITORY, store.route, repo, delay_seconds=store.config.gc_delay)


@dramatiq.actor(actor_name="gc_repository", queue_name="gc", max_retries=5, time_limit=_DAY_MS)
async def gc_repository(route: str, repo: str) -> None:
    store = _store(route)
    if store is None:
        return
    # Released first: a deletion from now on schedules a GC of its own.
    await store.locks.release_claim(f"gc:{store.route}:{repo}")
    if await store.index.read(repo) is not None:
        _log(await collect_repository(store, repo))


@dramatiq.actor(actor_name="gc_sweep", queue_name="gc", max_retries=3, time_limit=_DAY_MS)
async def gc_sweep(route: str) -> None:
    """Collect every repository of one store (each store sweeps at its own `gcInterval`)."""
    store = _store(route)
    if store is not None:
        async for report in collect_store(store):
            _log(report)


def sweep_tickers(config: Config, broker: dramatiq.Broker) -> list[Ticker]:
    """Per store with gc on: every `gcInterval`, one `gc_sweep` across all gc-workers, started only
    inside the store's `gcTimeWindow` when it has one."""
    stores = {"": config.storage, **config.storage.sub_paths}
    return [
        Ticker(broker, GC_SWEEP, cfg.gc_interval, lambda: locks_for(config), f"gc:sweep:{route}", route,
               until_allowed=cfg.until_gc_window)
        for route, cfg in stores.items() if cfg.gc and cfg.gc_interval
    ]


@dramatiq.actor(actor_name="dedupe_reconcile", queue_name="dedupe", max_retries=3, time_limit=_DAY_MS)
async def dedupe_reconcile(force: bool = False) -> None:
    assert _ctx.registry is not None, "configure() first"
    for store in _ctx.registry.stores.values():
        if force or await store.blobs.policy.needs_reconcile():
            async with store.locks.hold("dedupe-reconcile:store"):
                report = await reconcile(store.blobs)
            log.info("dedupe reconcile of %s (dedupe %s): %d blobs, %d digests, %d linked, %d copied in %.1fs",
                     store.route or "/", "on" if report.dedupe else "off", report.blobs, report.digests,
                     report.linked, report.copied, report.seconds)


def schedule_reconcile(config: Config, broker: dramatiq.Broker) -> None:
    """At start-up: one reconcile job (across all processes) if a store's dedupe changed."""

    async def claim() -> bool:
        return await locks_for(config).try_claim("dedupe:reconcile", 60)

    if asyncio.run(claim()):
        enqueue_eventually(broker, DEDUPE_RECONCILE)
