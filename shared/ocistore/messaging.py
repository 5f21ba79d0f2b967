"""Dramatiq wiring shared by every process: broker, msgpack encoder, enqueue by name.

With a Redis URL the broker is Redis (replicas and worker pools on many hosts); without
one it is Dramatiq's in-memory broker, for the single-process mode.  Either way the API
hands events to a background thread, so a request never waits on Redis, and Redis
being down costs events (logged and counted) but never a push or a pull.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import dramatiq
import msgpack
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.encoder import Encoder, MessageData
from dramatiq.middleware.asyncio import AsyncIO

from .events import STREAM_KEY, STREAM_MAXLEN, SUBSCRIBERS, ActorRef, EventName, Queue

log = logging.getLogger("ocistore.events")


class MsgpackEncoder(Encoder):
    def encode(self, data: MessageData) -> bytes:
        return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> MessageData:
        return msgpack.unpackb(data, raw=False)  # type: ignore[no-any-return]


# A worker killed mid-job leaves its messages unacknowledged; Redis gives them to another
# worker once the dead one's heartbeat is this old, at the next queue maintenance, which runs
# on one broker command in ten (every consumer polls every few seconds).  So an interrupted
# GC or scrub pass resumes within about 30 s while a worker runs, or of one coming back
# (Dramatiq's defaults, 60 s and one command in a thousand, took many minutes).
HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 100_000  # per million commands


def setup_broker(redis_url: str | None) -> dramatiq.Broker:
    """Create the process's broker and make it global; call before importing any actor."""
    dramatiq.set_encoder(MsgpackEncoder())
    broker: dramatiq.Broker
    if redis_url:
        broker = RedisBroker(url=redis_url, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,  # type: ignore[no-untyped-call]
                             maintenance_chance=MAINTENANCE_CHANCE)
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(AsyncIO())
    for q in Queue:
        broker.declare_queue(q.value)
    dramatiq.set_broker(broker)
    return broker


def enqueue(broker: dramatiq.Broker, actor: ActorRef, *args: Any, delay_seconds: float | None = None) -> None:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=actor.queue.value, actor_name=actor.name, args=args, kwargs={}, options={}
    )
    broker.enqueue(message, delay=int(delay_seconds * 1000) if delay_seconds is not None else None)


def enqueue_eventually(broker: dramatiq.Broker, actor: ActorRef, *args: Any) -> None:
    """Enqueue now, or, with the broker unreachable (Redis down at start-up), from a background
    thread that keeps trying: a process starts and serves without its broker."""
    try:
        enqueue(broker, actor, *args)
        return
    except Exception as exc:
        log.warning("cannot enqueue %s yet (%s): retrying in the background", actor.name, exc)

    def retry() -> None:
        pause = 1.0
        while True:
            time.sleep(pause)
            try:
                enqueue(broker, actor, *args)
            except Exception:
                pause = min(pause * 2, 30.0)
                continue
            log.info("enqueued %s once the broker was reachable", actor.name)
            return

    threading.Thread(target=retry, name=f"enqueue-{actor.name}", daemon=True).start()


class EventEmitter:
    """Sends events from a background thread: to the subscribed actors and the stream."""

    def __init__(self, broker: dramatiq.Broker, redis_url: str | None, capacity: int = 100_000) -> None:
        self.broker = broker
        self.lost = 0
        self.sent = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(capacity)
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._thread = threading.Thread(target=self._run, name="ocistore-events", daemon=True)
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.lost += 1
            log.warning("event queue full: dropped %s for %s", event["event"], event["repo"])

    def redis_ok(self) -> bool | None:
        """Whether Redis answers a ping; None when this process runs without Redis."""
        if self._redis is None:
            return None
        try:
            return bool(self._redis.ping())
        except Exception:
            return False

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                for actor in SUBSCRIBERS[EventName(event["event"])]:
                    enqueue(self.broker, actor, event)
                if self._redis is not None:
                    self._redis.xadd(STREAM_KEY, {"data": msgpack.packb(event)}, maxlen=STREAM_MAXLEN,
                                     approximate=True)
                self.sent += 1
            except Exception as exc:
                self.lost += 1
                log.warning("event %s for %s lost: %s", event["event"], event["repo"], exc)
