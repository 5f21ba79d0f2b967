"""`--json` on verify, gc, scrub, scrub --report and du: one document on stdout with the keys
the README documents, sizes as integers of bytes, and nothing else on stdout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.api.helpers import digest_of
from tests.cli.conftest import Filled
from tests.cli.helpers import push_image, run_json
from tests.servers import OcistoreServer

GC = {"repository", "dry_run", "stores", "totals"}
GC_STORE = {"gc", "gc_delay_seconds", "repositories", "aborted_multipart_uploads", "totals"}
GC_REPOSITORY = {"tags", "retention_dry_run", "manifests", "blobs", "uploads", "temporaries", "bytes_freed",
                 "physical_bytes_freed", "held_back_bytes", "emptied", "unreadable_manifests", "error"}
GC_TOTALS = {"repositories", "tags", "manifests", "blobs", "uploads", "temporaries", "bytes_freed",
             "physical_bytes_freed", "held_back_bytes", "errors"}
SCRUB_STORE = {"problems", "findings", "passes", "blobs_checked", "bytes_hashed", "last_pass_start",
               "last_pass_end", "last_pass_seconds"}
SCRUB_RUN = {"blobs_checked", "bytes_hashed", "seconds"}
USAGE = {"blobs", "logical_bytes", "physical_bytes", "saved_bytes", "physical_to_logical"}
VERIFY = {"config", "ok", "problems", "stores", "listen", "client_ca", "rate_limits", "htpasswd",
          "access_control", "redis", "scrub_interval_seconds"}
VERIFY_STORE = {"driver", "root_directory", "dedupe", "cache", "gc", "gc_delay_seconds", "gc_interval_seconds",
                "commit"}


def assert_byte_counts_are_integers(doc: Any, where: str = "") -> None:
    """Every value whose key speaks of bytes is an exact integer (never a float, a bool or a string)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if "bytes" in key and not isinstance(value, dict):
                assert type(value) is int, f"{where}.{key} = {value!r}"
            assert_byte_counts_are_integers(value, f"{where}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            assert_byte_counts_are_integers(value, f"{where}[{i}]")


def test_gc_json(filled: Filled) -> None:
    code, doc = run_json("gc", filled.config, "--dry-run")
    assert code == 0 and set(doc) == GC and doc["dry_run"] is True and doc["repository"] is None, doc
    store = doc["stores"]["/"]
    assert set(store) == GC_STORE and store["gc"] is True and store["gc_delay_seconds"] == 3600, store
    assert set(store["repositories"]) == {"cli/app", "cli/other"}
    for report in store["repositories"].values():
        assert set(report) == GC_REPOSITORY, report
    app = store["repositories"]["cli/app"]
    assert app["blobs"] == [digest_of(filled.orphan)] and app["bytes_freed"] == len(filled.orphan), app
    assert app["physical_bytes_freed"] == len(filled.orphan) and app["held_back_bytes"] == 0, app
    assert set(store["totals"]) == GC_TOTALS and store["totals"] == doc["totals"], doc
    assert doc["totals"]["blobs"] == 1 and doc["totals"]["repositories"] == 2, doc
    assert_byte_counts_are_integers(doc)


def test_gc_json_lists_each_tag_retention_removes_with_its_reason(new_server: Callable[..., OcistoreServer]) -> None:
    server = new_server(retention={"delay": "0s", "policies": [
        {"repositories": ["cli/**"], "keepTags": [{"patterns": [".*"], "mostRecentlyPushedCount": 1}]}]})
    with httpx.Client(base_url=server.url, timeout=60) as client:
        older = push_image(client, "cli/tags", "older", [b"an older layer" * 50])
        push_image(client, "cli/tags", "newer", [b"a newer layer" * 50])
    server.stop()  # what it recorded of the pushes reaches the store on the way out
    code, doc = run_json("gc", str(server.config_path), "--repo", "cli/tags")
    assert code == 0 and doc["repository"] == "cli/tags", doc
    report = doc["stores"]["/"]["repositories"]["cli/tags"]
    assert report["tags"] == [{"tag": "older", "digest": older.digest,
                               "reason": "didn't meet any tag retention rule"}], report
    assert report["manifests"] == [older.digest] and report["retention_dry_run"] is False, report
    assert doc["totals"]["tags"] == 1 and doc["totals"]["manifests"] == 1, doc


def test_scrub_and_scrub_report_json(filled: Filled) -> None:
    code, doc = run_json("scrub", filled.config)
    assert code == 0 and set(doc) == {"repository", "stores", "totals"} and doc["totals"] == {"problems": 0}, doc
    store = doc["stores"]["/"]
    assert set(store) == SCRUB_STORE | {"run"} and set(store["run"]) == SCRUB_RUN, store
    blobs = [*filled.app.blobs, *filled.other.blobs, filled.orphan]
    assert store["run"]["blobs_checked"] == len(blobs), store
    assert store["run"]["bytes_hashed"] == sum(len(b) for b in blobs), store
    assert store["problems"] == 0 and store["findings"] == [] and store["passes"] >= 1, store
    assert_byte_counts_are_integers(doc)

    code, report = run_json("scrub", filled.config, "--report")
    assert code == 0 and set(report) == {"stores", "totals"}, report
    assert set(report["stores"]["/"]) == SCRUB_STORE, report
    assert {k: report["stores"]["/"][k] for k in SCRUB_STORE} == {k: store[k] for k in SCRUB_STORE}
    assert_byte_counts_are_integers(report)


def test_du_json(filled: Filled) -> None:
    code, doc = run_json("du", filled.config)
    assert code == 0 and set(doc) == {"repository", "stores", "totals"}, doc
    store = doc["stores"]["/"]
    assert set(store) == USAGE | {"repositories"} and set(doc["totals"]) == USAGE, doc
    app = store["repositories"]["cli/app"]
    assert set(app) == USAGE
    assert app["logical_bytes"] == sum(len(b) for b in (*filled.app.blobs, filled.orphan)), app
    shared = len(filled.app.layers[0])
    assert store["saved_bytes"] == shared == store["logical_bytes"] - store["physical_bytes"], store
    assert doc["totals"] == {k: store[k] for k in USAGE}
    assert_byte_counts_are_integers(doc)

    code, one = run_json("du", filled.config, "--repo", "cli/other")
    assert code == 0 and one["repository"] == "cli/other" and set(one["stores"]["/"]["repositories"]) == {"cli/other"}


def test_verify_json(filled: Filled) -> None:
    code, doc = run_json("verify", filled.config)
    assert code == 0 and set(doc) == VERIFY and doc["ok"] is True and doc["problems"] == [], doc
    assert doc["config"] == filled.config and doc["listen"] == f"http://127.0.0.1:{filled.server.port}", doc
    store = doc["stores"]["/"]
    assert set(store) == VERIFY_STORE, store
    assert store == {"driver": "local", "root_directory": str(filled.server.root), "dedupe": True,
                     "cache": "embedded", "gc": True, "gc_delay_seconds": 3600, "gc_interval_seconds": 3600,
                     "commit": False}
