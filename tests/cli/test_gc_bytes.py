"""What `ocistore gc` says it frees: logical bytes, the physical bytes that really came free
(a blob another repository still links frees nothing), and what gcDelay still holds back.

Old is made by file times (`age_everything`), young by pushing after it, with a gcDelay of
an hour, so no test waits for anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx

from ocistore.units import format_bytes
from tests.api.helpers import digest_of, push_blob
from tests.cli.conftest import OLD
from tests.cli.helpers import age_everything, blob_path, push_image, run, run_json
from tests.servers import OcistoreServer


def test_deleting_one_of_two_repositories_sharing_an_image_frees_no_physical_bytes_of_it(
    new_server: Callable[..., OcistoreServer],
) -> None:
    server = new_server()
    shared = os.urandom(64 << 10)
    unique = os.urandom(12 << 10)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        first = push_image(client, "cli/first", "v1", [shared])
        # The same image in a second repository: with dedupe on, each of its files is a link to the first's.
        push_image(client, "cli/second", "v1", [shared], config=first.config)
        push_blob(client, "cli/first", unique)  # referenced by nothing, and held by nothing else
        assert client.delete("/v2/cli/first/manifests/v1").status_code == 202  # the tag: GC takes the rest
    server.stop()
    for blob in (first.config, shared):
        assert blob_path(server, "cli/first", blob).stat().st_nlink == 2, "the push did not dedupe"
    age_everything(server, OLD)
    config = str(server.config_path)
    logical = sum(len(b) for b in (*first.blobs, unique))
    # What has no other name: the unique blob, and the manifest (manifests are stored per repository).
    physical = sum(len(b) for b in (*first.blobs, unique) if blob_path(server, "cli/first", b).stat().st_nlink == 1)
    assert physical == len(first.manifest) + len(unique)

    for args in (["--dry-run"], []):
        code, doc = run_json("gc", config, "--repo", "cli/first", *args)
        assert code == 0, doc
        report = doc["stores"]["/"]["repositories"]["cli/first"]
        assert report["manifests"] == [first.digest], report
        assert sorted(report["blobs"]) == sorted(digest_of(b) for b in (first.config, shared, unique)), report
        assert report["bytes_freed"] == logical, report
        assert report["physical_bytes_freed"] == physical, report
        assert doc["totals"]["physical_bytes_freed"] == physical, doc
    for blob in (*first.blobs, unique):
        assert not blob_path(server, "cli/first", blob).exists()
    for blob in first.blobs:
        assert blob_path(server, "cli/second", blob).read_bytes() == blob

    # The last holder goes: now its bytes come free.
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.delete("/v2/cli/second/manifests/v1").status_code == 202
    server.stop()
    age_everything(server, OLD)
    done = run("gc", config, "--repo", "cli/second")
    assert done.returncode == 0, done.stderr
    freed = sum(len(b) for b in first.blobs)
    assert f"freed {format_bytes(freed)} logical, {format_bytes(freed)} physical" in done.stdout, done.stdout


def test_an_unreferenced_blob_younger_than_gc_delay_is_kept_and_reported_held_back(
    new_server: Callable[..., OcistoreServer],
) -> None:
    server = new_server()
    old, young = os.urandom(5000), os.urandom(7 << 10)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        image = push_image(client, "cli/held", "v1", [os.urandom(2000)])
        push_blob(client, "cli/held", old)
        age_everything(server, OLD)
        push_blob(client, "cli/held", young)  # a push in flight, as far as GC can tell
    server.stop()
    config = str(server.config_path)

    dry = run("gc", config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would free {format_bytes(len(old))} logical" in dry.stdout, dry.stdout
    assert f"gcDelay holds back {format_bytes(len(young))}" in dry.stdout, dry.stdout
    code, doc = run_json("gc", config)
    assert code == 0, doc
    report = doc["stores"]["/"]["repositories"]["cli/held"]
    assert report["blobs"] == [digest_of(old)] and report["bytes_freed"] == len(old), report
    assert report["held_back_bytes"] == len(young) == doc["totals"]["held_back_bytes"], doc
    assert blob_path(server, "cli/held", young).read_bytes() == young
    assert not blob_path(server, "cli/held", old).exists()
    assert all(blob_path(server, "cli/held", b).exists() for b in image.blobs)
