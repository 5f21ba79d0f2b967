"""What a scrape reads from state the processes share, as ready Prometheus families:
every store's scrub report, the queues, and whether the dependencies answer.

Counted nowhere else, so in multiprocess mode no process's counter doubles them.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .messaging import QueueStat
from .scrub_report import Problem, ScrubReport


def scrub_families(reports: dict[str, ScrubReport]) -> list[Metric]:
    """Every store's report as Prometheus families, labelled by store route (`/` for the
    default). Every known problem has a series, at 0 when absent, so an alert on `> 0` has one
    to watch."""
    passes = CounterMetricFamily("ocistore_scrub_passes", "Full scrub passes completed.", labels=["store"])
    checked = CounterMetricFamily("ocistore_scrub_blobs_checked", "Blob files re-hashed.", labels=["store"])
    hashed = CounterMetricFamily("ocistore_scrub_bytes_hashed", "Bytes re-hashed.", labels=["store"])
    found = CounterMetricFamily("ocistore_scrub_problems_found", "Problems found that were not known before.",
                                labels=["store"])
    problems = GaugeMetricFamily("ocistore_scrub_problems", "Current scrub findings by problem.",
                                 labels=["store", "problem"])
    last = GaugeMetricFamily("ocistore_scrub_last_pass_seconds", "Duration of the last full pass.", labels=["store"])
    ended = GaugeMetricFamily("ocistore_scrub_last_pass_end_timestamp_seconds",
                              "When the last full pass ended (Unix time).", labels=["store"])
    for store, report in sorted(reports.items()):
        passes.add_metric([store], report.passes)
        checked.add_metric([store], report.blobs_checked)
        hashed.add_metric([store], report.bytes_hashed)
        found.add_metric([store], report.problems_found)
        counts: Counter[str] = Counter({p.value: 0 for p in Problem})
        counts.update(f.problem for f in report.findings.values())
        for problem, n in sorted(counts.items()):
            problems.add_metric([store, problem], n)
        if report.last_pass_seconds is not None and report.last_pass_end is not None:
            last.add_metric([store], report.last_pass_seconds)
            ended.add_metric([store], report.last_pass_end)
    return [passes, checked, hashed, found, problems, last, ended]


def queue_families(stats: list[QueueStat]) -> list[Metric]:
    ready = GaugeMetricFamily("ocistore_queue_messages", "Messages waiting for a worker, by queue and state.",
                              labels=["queue", "state"])
    age = GaugeMetricFamily("ocistore_queue_oldest_message_age_seconds",
                            "How long the oldest ready message of a queue has waited.", labels=["queue"])
    for q in stats:
        ready.add_metric([q.queue, "ready"], q.ready)
        ready.add_metric([q.queue, "delayed"], q.delayed)
        age.add_metric([q.queue], q.oldest_age)
    return [ready, age]


def dependency_families(found: dict[str, bool]) -> list[Metric]:
    up = GaugeMetricFamily("ocistore_dependency_up", "Whether a shared dependency answers (1) or not (0).",
                           labels=["dependency"])
    for name, ok in sorted(found.items()):
        up.add_metric([name], int(ok))
    return [up]
