"""Two API replicas sharing one bucket: no upload or tag state may live in one process.

The replicas are addressed directly (not through the load balancer) so the test, not the
balancer's rotation, decides which replica serves each request.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.helpers import OCI_MANIFEST, build_image, digest_of, push_blob, push_manifest
from tests.moto import MotoServer
from tests.s3.conftest import Launched, blob_objects
from tests.servers import OcistoreTopology, RedisServer

MIB = 1 << 20
# Sizes straddling S3's 5 MiB part minimum: small first and last chunks, a large middle one.
CHUNKS = [3 * MIB, 6 * MIB, 3 * MIB]
TAGS = 50
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def shared_bucket(moto_s3: MotoServer) -> Iterator[str]:
    name = moto_s3.new_bucket()
    try:
        yield name
    finally:
        moto_s3.remove_bucket(name)


@pytest.fixture(scope="module")
def topology_processes() -> Iterator[Launched]:
    """The module's topology, whose logs a failing test of the module gets."""
    procs = Launched()
    try:
        yield procs
    finally:
        for p in procs.processes:
            p.stop()


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoServer, shared_bucket: str,
             session_redis: RedisServer, topology_processes: Launched) -> OcistoreTopology:
    """One `ocistore topology --replicas 2` on one bucket for the module (each test has its own repository)."""
    topo = OcistoreTopology(tmp_path_factory.mktemp("s3-topology"), session_redis.url,
                            storage={"storageDriver": moto_s3.driver_params(shared_bucket)}, replicas=2)
    topology_processes.add(topo)
    topo.start(timeout=START_TIMEOUT)
    assert len(topo.replicas) == 2, topo.state
    return topo


@pytest.fixture
def replicas(topology: OcistoreTopology, topology_processes: Launched) -> Iterator[list[httpx.Client]]:
    clients = [httpx.Client(base_url=url, timeout=60.0) for url in topology.replicas]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


def session_url(location: str, digest: str | None = None) -> httpx.URL:
    """A Location as a path plus query, to send to whichever replica the test picks."""
    url = httpx.URL(location)
    relative = httpx.URL(url.raw_path.decode())
    return relative.copy_merge_params({"digest": digest}) if digest else relative


def test_chunked_upload_hopping_between_replicas(
        replicas: list[httpx.Client], moto_s3: MotoServer, shared_bucket: str) -> None:
    """PATCHes of 3, 6 and 3 MiB alternate between the replicas; the blob is whole on both."""
    repo = f"replicas/{uuid.uuid4().hex[:10]}"
    chunks = [os.urandom(n) for n in CHUNKS]
    blob = b"".join(chunks)
    digest = digest_of(blob)
    started = replicas[0].post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    offset = 0
    for i, chunk in enumerate(chunks):
        serving, other = replicas[(i + 1) % 2], replicas[i % 2]
        resp = serving.patch(session_url(location), content=chunk, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
        assert resp.status_code == 202, (i, resp.status_code, resp.text)
        offset += len(chunk)
        assert resp.headers["Range"] == f"0-{offset - 1}", resp.headers
        location = resp.headers["Location"]
        # The other replica knows the session's progress too.
        status = other.get(session_url(location))
        assert status.status_code == 204, (i, status.status_code, status.text)
        assert status.headers["Range"] == f"0-{offset - 1}", status.headers
    done = replicas[1].put(session_url(location, digest), headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, (done.status_code, done.text)
    assert done.headers.get("Docker-Content-Digest") == digest
    for client in replicas:
        got = client.get(f"/v2/{repo}/blobs/{digest}")
        assert got.status_code == 200, got.status_code
        assert len(got.content) == len(blob) and digest_of(got.content) == digest
        head = client.head(f"/v2/{repo}/blobs/{digest}")
        assert int(head.headers["Content-Length"]) == len(blob), head.headers
    assert moto_s3.uploads(shared_bucket) == []  # no multipart upload left behind by the appends


def test_concurrent_tagging_through_both_replicas_loses_no_tag(replicas: list[httpx.Client]) -> None:
    """Every tag PUT answered 201 is listed by both replicas afterwards."""
    repo = f"replicas/{uuid.uuid4().hex[:10]}"
    image = build_image(replicas[0], repo)
    push_manifest(replicas[1], repo, "base", image.manifest, image.media_type)
    tags = [f"t{i:03d}" for i in range(TAGS)]

    def tag(i: int) -> int:
        resp = replicas[i % 2].put(f"/v2/{repo}/manifests/{tags[i]}", content=image.manifest,
                                   headers={"Content-Type": OCI_MANIFEST})
        return resp.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(tag, range(TAGS)))
    assert statuses == [201] * TAGS, statuses
    for client in replicas:
        listed = client.get(f"/v2/{repo}/tags/list", params={"n": 1000})
        assert listed.status_code == 200, listed.text
        assert sorted(listed.json()["tags"]) == sorted([*tags, "base"])
        for t in (tags[0], tags[-1]):
            resp = client.get(f"/v2/{repo}/manifests/{t}", headers={"Accept": OCI_MANIFEST})
            assert resp.status_code == 200 and resp.content == image.manifest


def test_one_layer_pushed_concurrently_through_both_replicas_is_held_once(
        replicas: list[httpx.Client], moto_s3: MotoServer, shared_bucket: str) -> None:
    """Replicas racing to place one digest agree on a single original (the lock is shared)."""
    layer = os.urandom(200_000)
    digest = digest_of(layer)
    tag = uuid.uuid4().hex[:10]
    repos = [f"replicas/{tag}-{i}" for i in range(8)]

    def push(i: int) -> str:
        return push_blob(replicas[i % 2], repos[i], layer)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(push, range(len(repos)))) == [digest] * len(repos)
    objects = blob_objects(moto_s3, shared_bucket, digest)
    assert len(objects) == len(repos) and sorted(objects.values()) == [0] * (len(repos) - 1) + [len(layer)], objects
    for i, repo in enumerate(repos):
        got = replicas[(i + 1) % 2].get(f"/v2/{repo}/blobs/{digest}")
        assert got.status_code == 200 and digest_of(got.content) == digest, (repo, got.status_code)
