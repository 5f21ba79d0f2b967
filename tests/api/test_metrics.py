"""The Prometheus series an operator alerts on, scraped from a real `ocistore serve` after real
pushes, pulls and a GC: parsed with prometheus-client's own parser, and linted by
`promtool check metrics` (Debian's prometheus package)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.api.helpers import metric, push_random_image, scrape
from tests.servers import OcistoreServer, require_tool, wait_until


def test_requests_storage_locks_holder_index_gc_queues_and_build_are_exposed(tmp_path: Path) -> None:
    server = OcistoreServer(tmp_path, {"gc": True, "gcDelay": "1s"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            image = push_random_image(c, "metrics/app", "v1")
            push_random_image(c, "metrics/other", "v1")
            assert c.get("/v2/metrics/app/manifests/v1", headers={"Accept": image.media_type}).status_code == 200
            assert c.get("/v2/metrics/app/manifests/nope").status_code == 404
            assert c.delete(f"/v2/metrics/app/manifests/{image.digest}").status_code == 202

        def collected() -> bool:
            return metric(scrape(server.url)[1], "ocistore_gc_removed_total", store="/", kind="blob") >= 1

        # The deletion schedules the repository's GC gcDelay later, in the server's own worker.
        assert wait_until(collected, timeout=30), scrape(server.url)[0][-3000:]
        text, samples = scrape(server.url)
        manifest = "/v2/{name}/manifests/{reference}"
        assert metric(samples, "ocistore_http_requests_total", method="PUT", route=manifest, code="201") == 2
        assert metric(samples, "ocistore_http_requests_total", method="GET", route=manifest, code="404") == 1
        assert metric(samples, "ocistore_http_request_duration_seconds_bucket", route=manifest, le="0.0001") >= 0
        assert metric(samples, "ocistore_http_request_duration_seconds_count", method="GET", route=manifest) == 2
        assert metric(samples, "ocistore_http_request_bytes_total", method="PUT", route=manifest) \
            >= len(image.manifest)
        assert metric(samples, "ocistore_http_response_bytes_total", method="GET", route=manifest) \
            >= len(image.manifest)
        assert metric(samples, "ocistore_http_requests_in_flight") >= 1  # the scrape itself
        assert metric(samples, "ocistore_storage_operation_seconds_count", driver="local", operation="stat") > 0
        assert metric(samples, "ocistore_lock_wait_seconds_count", kind="index") > 0
        assert metric(samples, "ocistore_holder_index_lookups_total") > 0
        assert metric(samples, "ocistore_gc_runs_total", store="/") >= 1
        assert metric(samples, "ocistore_gc_freed_bytes_total", store="/") >= len(image.layers[0])
        assert metric(samples, "ocistore_events_sent_total") >= 3
        assert ("ocistore_events_lost_total", frozenset()) in samples
        assert metric(samples, "ocistore_worker_messages_total", queue="gc", outcome="done") >= 1
        assert ("ocistore_queue_messages", frozenset({("queue", "gc"), ("state", "ready")})) in samples
        assert ("ocistore_queue_oldest_message_age_seconds", frozenset({("queue", "gc")})) in samples
        assert metric(samples, "ocistore_scrub_passes_total", store="/") >= 0
        assert any(n == "ocistore_build_info" and v == 1 for (n, _), v in samples.items())
        assert 'route="/v2/metrics/app' not in text, "a raw path became a label: the series would be unbounded"

        promtool = require_tool("promtool")
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        server.stop()
