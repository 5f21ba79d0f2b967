"""What each small operation costs in S3 requests, counted where they arrive (moto, per bucket).

On S3 a request is the unit of latency and of price, so the counts are behaviour: a change that
sends a HEAD before every PUT again, or lists to learn that a key is missing, fails here. Each
bound is the operation's own requests plus an allowance for what a server does on its own
clock (the damage register's listing and the dedupe policy's reread every 5 s, statistics
flushes), which may fall inside the counted window.

Two servers on one bucket also check the shortcuts those counts rest on: a replica's remembered
index.json is checked by its ETag on every read, so another replica's tag is seen at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.api.helpers import OCI_MANIFEST, build_image, push_blob, push_manifest
from tests.counting_moto import CountingMoto
from tests.s3.conftest import Launched
from tests.servers import OcistoreServer

T = TypeVar("T")
OPS = 10
# Requests a server may send on its own timers during a counted window (see the docstring).
BACKGROUND = 4


@pytest.fixture(scope="module")
def counting_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingMoto]:
    server = CountingMoto(tmp_path_factory.mktemp("counting-moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def counted_bucket(counting_moto: CountingMoto) -> Iterator[str]:
    name = counting_moto.new_bucket()
    try:
        yield name
    finally:
        counting_moto.remove_bucket(name)


def _server(tmp_path: Path, moto: CountingMoto, bucket: str, launched: Launched, name: str) -> httpx.Client:
    """An `ocistore serve` on the bucket (embedded holder index, dedupe on), and a client of it."""
    storage: dict[str, Any] = {"storageDriver": moto.driver_params(bucket), "dedupe": True}
    workdir = tmp_path / name
    workdir.mkdir()
    server = launched.add(OcistoreServer(workdir, storage).start())
    return httpx.Client(base_url=server.url, timeout=30)


def _counted(moto: CountingMoto, bucket: str, operation: Callable[[], None]) -> Counter[str]:
    """The requests that reached the bucket while `operation` ran, by S3 action."""
    before = Counter(moto.requests(bucket))
    operation()
    after = Counter(moto.requests(bucket))
    return after - before


def _each(items: Iterable[T], call: Callable[[T], object]) -> None:
    for item in items:
        call(item)


@pytest.fixture
def client(tmp_path: Path, counting_moto: CountingMoto, counted_bucket: str, launched: Launched) -> httpx.Client:
    """A server whose first requests (the client's bucket check, the first fenced write's probe)
    are behind it: a warm-up push of an image."""
    http = _server(tmp_path, counting_moto, counted_bucket, launched, "one")
    warm = build_image(http, "warm", layers=1)
    push_manifest(http, "warm", "latest", warm.manifest)
    return http


def test_a_small_monolithic_push_writes_its_bytes_once(client: httpx.Client, counting_moto: CountingMoto,
                                                       counted_bucket: str) -> None:
    """POST+PUT of 4 KiB: the session's PutObject, its HEAD and DeleteObject, and the blob's one
    PutObject; no copy from the session, no listing to learn that the blob is new."""
    blobs = [os.urandom(4096) for _ in range(OPS)]
    sent = _counted(counting_moto, counted_bucket, lambda: _each(blobs, lambda b: push_blob(client, "small", b)))
    assert sent["CopyObject"] == 0, sent
    assert sent["ListObjectsV2"] <= 2, sent  # the damage register's refresh, at most
    assert sum(sent.values()) <= 4 * OPS + BACKGROUND, sent
    for data in blobs:
        resp = client.get(f"/v2/small/blobs/sha256:{hashlib.sha256(data).hexdigest()}")
        assert resp.status_code == 200 and resp.content == data


def test_manifest_reads_and_tag_writes_send_one_request_per_document(
        client: httpx.Client, counting_moto: CountingMoto, counted_bucket: str) -> None:
    """A manifest PUT by a new tag: a HEAD per referenced blob, the manifest's conditional
    PutObject (no look first), and index.json's conditional GET and conditional PutObject. A GET by tag: index.json's
    conditional GET (304 while unchanged) and the manifest's GetObject. A blob HEAD and a tag list:
    one request each."""
    image = build_image(client, "docs", layers=1)  # a config and one layer: two references
    bodies = [json.dumps({**json.loads(image.manifest), "annotations": {"n": str(i)}}).encode() for i in range(OPS)]
    put = _counted(counting_moto, counted_bucket,
                   lambda: _each(range(OPS), lambda i: push_manifest(client, "docs", f"t{i}", bodies[i])))
    assert put["ListObjectsV2"] <= 2 and put["CopyObject"] == 0, put
    assert sum(put.values()) <= 5 * OPS + BACKGROUND, put

    def get_all() -> None:
        for i in range(OPS):
            resp = client.get(f"/v2/docs/manifests/t{i}", headers={"Accept": OCI_MANIFEST})
            assert resp.status_code == 200 and resp.content == bodies[i]

    got = _counted(counting_moto, counted_bucket, get_all)
    assert sum(got.values()) <= 2 * OPS + BACKGROUND, got
    assert got["HeadObject"] <= 1, got

    layer = json.loads(image.manifest)["layers"][0]["digest"]
    heads = _counted(counting_moto, counted_bucket,
                     lambda: _each(range(OPS), lambda _: client.head(f"/v2/docs/blobs/{layer}").raise_for_status()))
    assert sum(heads.values()) <= OPS + BACKGROUND, heads
    lists = _counted(counting_moto, counted_bucket,
                     lambda: _each(range(OPS), lambda _: client.get("/v2/docs/tags/list").raise_for_status()))
    assert sum(lists.values()) <= OPS + BACKGROUND, lists


def test_another_replica_s_tags_are_seen_at_once_and_kept_by_the_next_write(
        tmp_path: Path, counting_moto: CountingMoto, counted_bucket: str, launched: Launched) -> None:
    """Each replica remembers index.json by its ETag: a read after another replica's write gets the
    new file (the conditional GET does not match), and a write over it keeps the other's tags."""
    one = _server(tmp_path, counting_moto, counted_bucket, launched, "one")
    two = _server(tmp_path, counting_moto, counted_bucket, launched, "two")
    image = build_image(one, "shared", layers=1)
    push_manifest(one, "shared", "from-one", image.manifest)
    assert one.get("/v2/shared/tags/list").json()["tags"] == ["from-one"]  # remembered by one
    push_manifest(two, "shared", "from-two", image.manifest)
    assert one.get("/v2/shared/tags/list").json()["tags"] == ["from-one", "from-two"]
    assert one.get("/v2/shared/manifests/from-two", headers={"Accept": OCI_MANIFEST}).content == image.manifest
    push_manifest(one, "shared", "again-one", image.manifest)
    for replica in (one, two):
        assert replica.get("/v2/shared/tags/list").json()["tags"] == ["again-one", "from-one", "from-two"]
    assert two.delete("/v2/shared/manifests/from-one").status_code == 202
    resp = one.get("/v2/shared/manifests/from-one", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 404
