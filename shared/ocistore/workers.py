"""Running Dramatiq actors: the worker pool and the periodic tickers.

Used by the worker services and by the single-process mode, so both schedule and run
work the same way.  A ticker enqueues a job every interval; across many worker
processes only the one that wins the interval's claim enqueues it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq

from .events import ActorRef
from .locks import Locks
from .messaging import enqueue

log = logging.getLogger("ocistore.workers")


class Ticker(threading.Thread):
    """Every `interval` seconds, enqueue `actor` unless another process already did."""

    def __init__(self, broker: dramatiq.Broker, actor: ActorRef, interval: float,
                 make_locks: Callable[[], Locks], claim: str, *args: Any,
                 until_allowed: Callable[[float], float] | None = None) -> None:
        super().__init__(name=f"ticker-{actor.name}", daemon=True)
        self.broker = broker
        self.actor = actor
        self.args = args
        self.interval = interval
        self.make_locks = make_locks
        self.claim = claim
        # Seconds until a tick may enqueue (a window of the day, such as gcTimeWindow); 0: now.
        self.until_allowed = until_allowed
        self._stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        locks = self.make_locks()  # bound to this thread's loop
        while not self._stop.is_set():
            wait = self.until_allowed(time.time()) if self.until_allowed is not None else 0.0
            if wait > 0:
                log.info("%s waits %.0fs for its time window", self.actor.name, wait)
                await asyncio.to_thread(self._stop.wait, wait)
                continue
            try:
                # A little less than the interval, so the next tick of any process can claim.
                if await locks.try_claim(self.claim, self.interval * 0.9):
                    enqueue(self.broker, self.actor, *self.args)
            except Exception as exc:
                log.warning("could not schedule %s: %s", self.actor.name, exc)
            await asyncio.to_thread(self._stop.wait, self.interval)

    def stop(self) -> None:
        self._stop.set()


# How long an idle worker or consumer thread blocks before it looks at its stop flag again.
# Dramatiq stops the workers, then the consumers, each waiting out one such poll: at its
# default of 1 s every stop (a restart, a rolling update) took over 2 s with nothing to do.
# At 250 ms it takes about half a second, for four fetches a second per idle queue on Redis.
IDLE_POLL_MS = 250


def start_worker(broker: dramatiq.Broker, queues: Iterable[str], threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=threads, worker_timeout=IDLE_POLL_MS)
    worker.start()
    return worker


def run_until_signalled(worker: dramatiq.Worker, tickers: list[Ticker]) -> None:
    """Block until SIGTERM or SIGINT, then stop cleanly (an unfinished job is redelivered)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for t in tickers:
        t.start()
    stop.wait()
    for t in tickers:
        t.stop()
    worker.stop(timeout=10_000)
