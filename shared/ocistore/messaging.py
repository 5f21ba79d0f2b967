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
from dataclasses import dataclass
from typing import Any

import dramatiq
import msgpack
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.encoder import Encoder, MessageData
from dramatiq.middleware.asyncio import AsyncIO

from .events import STREAM_KEY, STREAM_MAXLEN, SUBSCRIBERS, ActorRef, EventName, Queue
from .logs import Sparse
from .metrics import EVENTS_LOST, EVENTS_SENT, WORKER_MESSAGES, WORKER_SECONDS

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
    broker.add_middleware(JobMetrics())
    for q in Queue:
        broker.declare_queue(q.value)
    dramatiq.set_broker(broker)
    return broker


class JobMetrics(dramatiq.Middleware):
    """Dramatiq's middleware hooks, feeding `ocistore_worker_*` (the same series in every
    process: dramatiq's own Prometheus middleware serves them from a forked process only the
    dramatiq CLI starts)."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        started = self._started.pop(message.message_id, None)
        WORKER_MESSAGES.labels(message.queue_name, message.actor_name, "failed" if exception else "done").inc()
        if started is not None:
            WORKER_SECONDS.labels(message.queue_name, message.actor_name).observe(time.perf_counter() - started)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started.pop(message.message_id, None)
        WORKER_MESSAGES.labels(message.queue_name, message.actor_name, "skipped").inc()


@dataclass(frozen=True)
class QueueStat:
    queue: str
    ready: int          # waiting for a worker
    delayed: int        # scheduled for later (GC runs gcDelay after a deletion)
    oldest_age: float   # seconds the oldest ready message has waited; 0 when none


def queue_stats(broker: dramatiq.Broker) -> list[QueueStat]:
    """Each queue's depth and the age of its oldest ready message, read from the broker now
    (Redis: the lists and hashes of Dramatiq's layout, `<namespace>:<queue>[.DQ][.msgs]`)."""
    now = time.time()
    out = []
    for q in Queue:
        if isinstance(broker, RedisBroker):
            client, key = broker.client, f"{broker.namespace}:{q.value}"
            ready, delayed = int(client.llen(key)), int(client.hlen(f"{key}.DQ.msgs"))
            first = client.lindex(key, 0)
            data = client.hget(f"{key}.msgs", first) if first is not None else None
        else:
            queues = broker.queues
            waiting, later = queues.get(q.value), queues.get(dq_name(q.value))
            ready, delayed = (waiting.qsize() if waiting else 0), (later.qsize() if later else 0)
            data = waiting.queue[0] if waiting and waiting.qsize() else None
        oldest = 0.0
        if isinstance(data, bytes):
            stamp = dramatiq.get_encoder().decode(data).get("message_timestamp")
            oldest = max(0.0, now - stamp / 1000) if isinstance(stamp, int | float) else 0.0
        out.append(QueueStat(q.value, ready, delayed, oldest))
    return out


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
        self._lost_since_said = 0
        self._say = Sparse(60.0)
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
            self._lost(f"the event queue is full ({event['event']} for {event['repo']})")

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
                EVENTS_SENT.inc()
            except Exception as exc:
                self._lost(f"{event['event']} for {event['repo']}: {exc}")

    def _lost(self, why: str) -> None:
        """Counted always (`ocistore_events_lost_total`); said at most once a minute, with how
        many went since, so an outage is a line a minute rather than one per event."""
        EVENTS_LOST.inc()
        self._lost_since_said += 1
        if self._say.due("lost"):
            log.warning("%d events lost since the last report, the last: %s (the gcInterval sweep covers "
                        "what they would have triggered)", self._lost_since_said, why)
            self._lost_since_said = 0
