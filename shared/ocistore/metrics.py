"""Prometheus series, with prometheus-client, for every process of a registry.

Where several processes serve one registry on one host (`ocistore topology`: replicas
behind one port, and the workers), they share `PROMETHEUS_MULTIPROC_DIR`, so whichever
replica a scrape reaches answers for all of them (prometheus-client's multiprocess mode;
the variable must be set before the process starts). Elsewhere each process exposes its
own: the API at `extensions.metrics.prometheus.path`, a worker on `--metrics-port`.

What is read from shared state rather than counted in a process (scrub reports, queue
depth and age, dependencies) is collected at scrape time by the caller and passed to
`exposition` as ready families, so no process's counter double-counts it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .version import package_version

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "timed"]

# From 100 µs: a HEAD of a remembered manifest answers in well under a millisecond.
LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
           5.0, 10.0, 30.0, 60.0, 300.0)
LONG = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)

HTTP_REQUESTS = Counter("ocistore_http_requests_total", "Requests answered, by method, route and status code.",
                        ["method", "route", "code"])
HTTP_DURATION = Histogram("ocistore_http_request_duration_seconds", "Time to answer a request (whole body sent).",
                          ["method", "route"], buckets=LATENCY)
HTTP_IN_FLIGHT = Gauge("ocistore_http_requests_in_flight", "Requests being answered.",
                       multiprocess_mode="livesum")
HTTP_REQUEST_BYTES = Counter("ocistore_http_request_bytes_total", "Request body bytes received.",
                             ["method", "route"])
HTTP_RESPONSE_BYTES = Counter("ocistore_http_response_bytes_total", "Response body bytes sent.",
                              ["method", "route"])
STORAGE_SECONDS = Histogram("ocistore_storage_operation_seconds",
                            "Storage driver calls (streams: until the first chunk).",
                            ["driver", "operation"], buckets=LATENCY)
STORAGE_ERRORS = Counter("ocistore_storage_operation_errors_total",
                         "Storage driver calls that failed (a missing path is no failure).", ["driver", "operation"])
HOLDER_INDEX = Counter("ocistore_holder_index_lookups_total",
                       "Holder-index lookups of a digest's original: hit, miss or error.", ["result"])
LOCK_WAIT = Histogram("ocistore_lock_wait_seconds", "Time to get a lock, by kind (index, upload, dedupe, ...).",
                      ["kind"], buckets=LATENCY)
GC_RUNS = Counter("ocistore_gc_runs_total", "Repository GC passes.", ["store"])
GC_REMOVED = Counter("ocistore_gc_removed_total", "What GC removed, by kind (tag, manifest, blob, upload, "
                     "temporary).", ["store", "kind"])
GC_FREED = Counter("ocistore_gc_freed_bytes_total", "Physical bytes GC freed (a copy another repository "
                   "still links frees nothing).", ["store"])
GC_DURATION = Histogram("ocistore_gc_duration_seconds", "Duration of a repository GC pass.", ["store"], buckets=LONG)
REPOSITORY_INDEX_CORRECTIONS = Counter(
    "ocistore_repository_index_corrections_total", "Repositories a sweep found missing from the repository "
    "index (added) or listed but gone (removed): changes made outside this registry.", ["store", "kind"])
REPOSITORY_INDEX_REBUILDS = Counter(
    "ocistore_repository_index_rebuilds_total", "Walks of a store because Redis no longer held its repository "
    "index (flushed, restarted empty, failed over to an empty replica).", ["store"])
EVENTS_SENT = Counter("ocistore_events_sent_total", "Events handed to the queue.")
EVENTS_LOST = Counter("ocistore_events_lost_total", "Events that could not be queued (the periodic sweep covers "
                      "what they would have triggered).")
WORKER_MESSAGES = Counter("ocistore_worker_messages_total", "Worker jobs done, by queue, actor and outcome.",
                          ["queue", "actor", "outcome"])
WORKER_SECONDS = Histogram("ocistore_worker_message_duration_seconds", "Duration of a worker job.",
                           ["queue", "actor"], buckets=LONG)
BUILD_INFO = Gauge("ocistore_build_info", "The running version (always 1).", ["version", "python"],
                   multiprocess_mode="max")


BUILD_INFO.labels(package_version(), platform.python_version()).set(1)


class _Ready(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(scraped: Iterable[Metric] = ()) -> bytes:
    """The text format of every process's series (all of the host's in multiprocess mode), then
    what the caller read from shared state for this scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
        text = generate_latest(processes)
    else:
        text = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_Ready(scraped))
    return text + generate_latest(extra)


def serve_metrics(port: int, address: str = "0.0.0.0") -> None:
    """A worker's own exposition (it has no HTTP server of its own), in a daemon thread."""
    from prometheus_client import start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, address, registry=registry)


class timed:
    """`with timed(histogram.labels(...)):` observes the block's duration, failed or not."""

    __slots__ = ("child", "started")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.child.observe(time.perf_counter() - self.started)
