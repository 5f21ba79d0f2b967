"""The single-process mode: the API and both workers' actors in one process.

This is the one module that wires several services together; the services never
import each other.  Without Redis the broker is in memory and a worker thread pool in
this process runs the jobs, with the same delays and intervals as the scaled topology.
"""

from __future__ import annotations

import logging

from ocistore.auth import Access
from ocistore.config import Config
from ocistore.events import Queue
from ocistore.messaging import EventEmitter, setup_broker
from ocistore.registry import Registry
from ocistore.workers import start_worker
from ocistore_api import server
from ocistore_api.app import create_app

log = logging.getLogger("ocistore")


def serve(config: Config, access: Access) -> None:
    broker = setup_broker(config.redis_url)
    # Actors bind to the broker that is global when they are imported.
    import ocistore_gc_worker.actors as gc_actors
    import ocistore_scrub_worker.actors as scrub_actors

    gc_actors.configure(config, broker)
    gc_actors.schedule_reconcile(config, broker)
    scrub_actors.configure(config)
    worker = start_worker(broker, [q.value for q in Queue], threads=2)
    scrub_ticker = scrub_actors.pass_ticker(config, broker)
    tickers = gc_actors.sweep_tickers(config, broker) + ([scrub_ticker] if scrub_ticker else [])
    for t in tickers:
        t.start()
    emitter = EventEmitter(broker, config.redis_url)
    registry = Registry.from_config(config)
    log.info("storing repositories in %s", registry.default.config.root_directory)
    try:
        server.run(create_app(registry, emitter, config.metrics, access), config)
    finally:
        for t in tickers:
            t.stop()
        emitter.close()
        worker.stop(timeout=10_000)
