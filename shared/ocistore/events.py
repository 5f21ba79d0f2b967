"""The event contract between the API and the workers, defined once.

The API emits an event after each state change; the events are Dramatiq messages
(msgpack-encoded) addressed to actors *by name*, so the API imports no worker code.
Each event is also appended to a bounded Redis stream that outside tools may read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1
STREAM_KEY = "ocistore:events"
STREAM_MAXLEN = 10_000


class Queue(StrEnum):
    """One queue per job, so ops scale each worker pool on its own."""

    GC = "gc"
    DEDUPE = "dedupe"
    SCRUB = "scrub"


class EventName(StrEnum):
    BLOB_COMMITTED = "blob.committed"
    MANIFEST_PUT = "manifest.put"
    MANIFEST_DELETED = "manifest.deleted"
    TAG_DELETED = "tag.deleted"
    BLOB_DELETED = "blob.deleted"


@dataclass(frozen=True)
class ActorRef:
    name: str
    queue: Queue


# Actors, by the names the workers register them under.
GC_ON_EVENT = ActorRef("gc_on_event", Queue.GC)
GC_REPOSITORY = ActorRef("gc_repository", Queue.GC)
GC_SWEEP = ActorRef("gc_sweep", Queue.GC)
SCRUB_PASS = ActorRef("scrub_pass", Queue.SCRUB)
DEDUPE_RECONCILE = ActorRef("dedupe_reconcile", Queue.DEDUPE)

# Which actors hear which event.
SUBSCRIBERS: dict[EventName, tuple[ActorRef, ...]] = {
    EventName.MANIFEST_DELETED: (GC_ON_EVENT,),
    EventName.TAG_DELETED: (GC_ON_EVENT,),
    EventName.BLOB_DELETED: (GC_ON_EVENT,),
    EventName.BLOB_COMMITTED: (),
    EventName.MANIFEST_PUT: (),
}


def make_event(name: EventName, store: str, repo: str, **fields: Any) -> dict[str, Any]:
    """An event payload: `v` (schema), `event`, `store` (subPath route, "" for the default),
    `repo`, `time` (epoch seconds), plus `digest`, `tag`, `mediaType`, `size` as relevant."""
    return {"v": SCHEMA_VERSION, "event": name.value, "store": store, "repo": repo, "time": time.time(),
            **{k: v for k, v in fields.items() if v is not None}}
