"""The scaled topology as processes: 2 API replicas, a gc-worker, a scrub-worker, a real Redis.

Each test is one promise of the scaled mode (issue 3, section 9): GC happens in the
background after `gcDelay` and never to something younger, replicas share upload
sessions and never lose each other's tags, scrub finds corruption, and Redis going away
costs neither pushes nor pulls.  Timing is checked by bounded polling, never by exact sleeps.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgpack
import redis

from tests.api.helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    delete_manifest,
    descriptor,
    digest_of,
    metric,
    next_link,
    open_session,
    patch_chunk,
    path_of,
    push_blob,
    push_manifest,
    push_random_image,
    scrape,
)
from tests.servers import OcistoreTopology, RedisServer, all_gone, blob_file, wait_until
from tests.topology.conftest import GC_DELAY, SCRUB_INTERVAL

# Dramatiq's delayed messages may start up to ~1s late; Redis reconnects back off for seconds.
GC_MARGIN = 10.0
REF_NAME = "org.opencontainers.image.ref.name"


def new_repo(prefix: str) -> str:
    return f"topo/{prefix}-{uuid.uuid4().hex[:8]}"


def image_digests(image: Image) -> list[str]:
    """Everything an image put on disk: manifest, config, layers."""
    return [image.digest, digest_of(image.config), *(digest_of(layer) for layer in image.layers)]


def assert_pullable(client: httpx.Client, repo: str, ref: str, image: Image) -> None:
    manifest = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": image.media_type})
    assert manifest.status_code == 200, manifest.text
    assert manifest.content == image.manifest
    for blob in (image.config, *image.layers):
        resp = client.get(f"/v2/{repo}/blobs/{digest_of(blob)}")
        assert resp.status_code == 200 and resp.content == blob, resp.status_code


def all_tags(client: httpx.Client, repo: str) -> list[str]:
    """The whole tag list, following `Link: rel=next` if the server pages it."""
    tags: list[str] = []
    url: str | None = f"/v2/{repo}/tags/list"
    while url is not None:
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        tags.extend(resp.json().get("tags") or [])
        url = next_link(resp)
    return tags


def test_manifest_deleted_through_one_replica_is_collected_by_the_gc_worker_after_gc_delay(
    topology: OcistoreTopology, replica_clients: list[httpx.Client], lb_client: httpx.Client
) -> None:
    """The deletion only schedules GC: the blobs stay for gcDelay, then the gc-worker removes them."""
    a, b = replica_clients
    repo = new_repo("gc")
    kept = push_random_image(a, repo, "keep")
    doomed = push_random_image(a, repo, "doomed")
    doomed_blobs = image_digests(doomed)[1:]
    delete_manifest(a, repo, doomed.digest)
    deleted_at = time.time()

    # Right after the delete the blobs are still there, on disk and through the other replica.
    for d in doomed_blobs:
        assert blob_file(topology.root, repo, d).exists(), f"{d} collected at once, before gcDelay"
    assert b.get(f"/v2/{repo}/blobs/{doomed_blobs[-1]}").status_code == 200
    assert b.get(f"/v2/{repo}/manifests/{doomed.digest}").status_code == 404

    gone_at = wait_until(all_gone(topology.root, repo, doomed_blobs), GC_DELAY + GC_MARGIN, 0.05)
    assert gone_at is not None, f"the deleted manifest's blobs are still there {GC_DELAY + GC_MARGIN}s later"
    assert gone_at - deleted_at >= GC_DELAY - 0.5, (
        f"collected {gone_at - deleted_at:.2f}s after the delete: before gcDelay ({GC_DELAY}s)"
    )
    # The worker logs the pass once it has returned, a moment after its last deletion.
    logged = wait_until(lambda: repo in topology.process_log("gc-worker"), 10, 0.05)
    assert logged is not None, "the gc-worker logged nothing about the repository it collected"
    for d in image_digests(kept):
        assert blob_file(topology.root, repo, d).exists(), f"tagged image lost {d}"
    assert_pullable(lb_client, repo, "keep", kept)
    assert all_tags(lb_client, repo) == ["keep"]


def test_unreferenced_blob_survives_gc_until_gc_delay_and_tagged_blobs_never_go(
    topology: OcistoreTopology, replica_clients: list[httpx.Client], lb_client: httpx.Client
) -> None:
    """A blob of a push in flight (no manifest yet) must outlive a GC that runs while it is young."""
    a, b = replica_clients
    repo = new_repo("young")
    tagged = push_random_image(b, repo, "stable")
    untagged = push_random_image(a, repo, "soon-untagged")
    delete_manifest(a, repo, "soon-untagged")  # tag.deleted: a GC of the repo in gcDelay
    deleted_at = time.time()

    # Keep pushing unreferenced blobs until that GC has run, so some are surely younger than gcDelay then.
    orphans: list[tuple[str, bytes, float]] = []
    gc_seen: float | None = None
    deadline = deleted_at + GC_DELAY + GC_MARGIN
    while time.time() < deadline:
        data = os.urandom(200 + len(orphans))
        digest = push_blob((a, b)[len(orphans) % 2], repo, data)
        orphans.append((digest, data, blob_file(topology.root, repo, digest).stat().st_mtime))
        if all_gone(topology.root, repo, image_digests(untagged))():
            gc_seen = time.time()
            break
        time.sleep(0.2)
    assert gc_seen is not None, f"the untagged manifest was not collected within {GC_DELAY + GC_MARGIN}s"
    assert gc_seen - deleted_at >= GC_DELAY - 0.5, f"GC ran {gc_seen - deleted_at:.2f}s after the delete"

    young = [(d, data) for d, data, mtime in orphans if gc_seen - mtime < GC_DELAY - 0.3]
    assert young, "no blob was young when GC ran; the test proved nothing"
    for d, _ in young:
        assert blob_file(topology.root, repo, d).exists(), f"GC removed {d}, younger than gcDelay"
    # The push in flight completes: its manifest may reference what it uploaded before the GC.
    (config_digest, config), (layer_digest, layer) = young[-2:] if len(young) >= 2 else (young[0], young[0])
    finished = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config), "layers": [descriptor(OCI_LAYER, layer)],
    }).encode()
    push_manifest(b, repo, "finished", finished)

    # Once older than gcDelay, the unreferenced ones go with the next GC of the repository.
    time.sleep(0.3)
    trigger = push_random_image(a, repo)
    delete_manifest(b, repo, trigger.digest)
    assert wait_until(all_gone(topology.root, repo, image_digests(trigger)[1:]), GC_DELAY + GC_MARGIN), (
        "the second GC did not run"
    )
    leftovers = [d for d, _, _ in orphans
                 if d not in (config_digest, layer_digest) and blob_file(topology.root, repo, d).exists()]
    assert not leftovers, f"unreferenced blobs older than gcDelay survived the GC: {leftovers}"
    for d in (config_digest, layer_digest, *image_digests(tagged)):
        assert blob_file(topology.root, repo, d).exists(), f"referenced blob {d} was collected"
    assert_pullable(lb_client, repo, "stable", tagged)
    assert lb_client.get(f"/v2/{repo}/blobs/{layer_digest}").content == layer
    assert sorted(all_tags(lb_client, repo)) == ["finished", "stable"]


def test_chunked_upload_alternating_between_replicas_finishes_with_the_right_digest(
    replica_clients: list[httpx.Client], lb_client: httpx.Client
) -> None:
    """Upload sessions live in storage, so each PATCH may land on another replica."""
    repo = new_repo("chunked")
    data = os.urandom(3 * (1 << 20) + 12345)
    chunk = 512 * 1024
    location = path_of(open_session(replica_clients[0], repo))
    offset = 0
    for i, start in enumerate(range(0, len(data), chunk)):
        piece = data[start:start + chunk]
        resp = patch_chunk(replica_clients[(i + 1) % 2], location, piece, start)
        assert resp.status_code == 202, f"PATCH {i} via replica {(i + 1) % 2}: {resp.status_code} {resp.text}"
        offset = start + len(piece)
        assert resp.headers["Range"] == f"0-{offset - 1}"
        location = path_of(resp.headers["Location"])
    status = replica_clients[0].get(location)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(data) - 1}"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    done = replica_clients[1].put(httpx.URL(location).copy_merge_params({"digest": digest}),
                                  headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    for client in (*replica_clients, lb_client):
        got = client.get(f"/v2/{repo}/blobs/{digest}")
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == digest.split(":", 1)[1]


def test_events_reach_the_redis_stream_as_msgpack(
    replica_clients: list[httpx.Client], redis_server: RedisServer
) -> None:
    """Outside tools read every change from the bounded stream, in the contract's shape."""
    repo = new_repo("events")
    image = push_random_image(replica_clients[0], repo, "v1")
    delete_manifest(replica_clients[1], repo, image.digest)
    conn = redis.Redis.from_url(redis_server.url)

    def seen() -> list[dict[str, Any]]:
        entries = conn.xrange("ocistore:events", "-", "+")
        events = [msgpack.unpackb(fields[b"data"]) for _, fields in entries]
        return [e for e in events if e["repo"] == repo]

    wait_until(lambda: any(e["event"] == "manifest.deleted" for e in seen()), 10.0)
    events = seen()
    names = [e["event"] for e in events]
    assert names.count("blob.committed") == 1 + len(image.layers)
    assert "manifest.put" in names and names[-1] == "manifest.deleted"
    put = next(e for e in events if e["event"] == "manifest.put")
    assert put["v"] == 1 and put["digest"] == image.digest and put["tags"] == ["v1"] and put["store"] == ""
    assert conn.xinfo_stream("ocistore:events")["length"] <= 11_000


def test_two_replicas_tagging_one_repository_concurrently_lose_no_tag(
    topology: OcistoreTopology, replica_clients: list[httpx.Client], lb_client: httpx.Client
) -> None:
    """Tags live in one index.json per repository; the Redis lock must keep every replica's writes."""
    repo = new_repo("tags")
    base = push_random_image(replica_clients[0], repo)
    manifest = json.loads(base.manifest)
    bodies: dict[str, bytes] = {}
    for i in range(200):
        bodies[f"t{i:03d}"] = json.dumps(dict(manifest, annotations={"n": str(i)})).encode()

    def put(tag: str) -> int:
        client = replica_clients[int(tag[1:]) % 2]
        resp = client.put(f"/v2/{repo}/manifests/{tag}", content=bodies[tag],
                          headers={"Content-Type": OCI_MANIFEST})
        return resp.status_code

    with ThreadPoolExecutor(32) as pool:
        statuses = dict(zip(bodies, pool.map(put, bodies), strict=True))
    assert all(s == 201 for s in statuses.values()), {t: s for t, s in statuses.items() if s != 201}

    for client in (*replica_clients, lb_client):
        tags = all_tags(client, repo)
        missing = sorted(set(bodies) - set(tags))
        assert not missing, f"{len(missing)} tags lost: {missing[:20]}"
    index = json.loads((topology.root / repo / "index.json").read_text())
    on_disk = {d["annotations"][REF_NAME]: d["digest"] for d in index["manifests"]
               if REF_NAME in (d.get("annotations") or {})}
    assert sorted(set(bodies) - set(on_disk)) == [], "index.json lost tags"
    for tag, body in bodies.items():
        assert on_disk[tag] == digest_of(body), f"{tag} points at the wrong manifest on disk"
    some = replica_clients[1].get(f"/v2/{repo}/manifests/t123", headers={"Accept": OCI_MANIFEST})
    assert some.status_code == 200 and some.content == bodies["t123"]


def _findings(doc: Any) -> Iterator[dict[str, Any]]:
    """Every object in the report that names a digest, however the report nests them."""
    if isinstance(doc, dict):
        if "digest" in doc:
            yield doc
        for value in doc.values():
            yield from _findings(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _findings(value)


def _mismatch_for(doc: Any, digest: str) -> dict[str, Any] | None:
    for finding in _findings(doc):
        if finding.get("digest") == digest and "mismatch" in str(finding.get("problem", "")).lower():
            return finding
    return None


def test_corrupted_blob_shows_up_in_the_scrub_report_within_one_interval(
    topology: OcistoreTopology, replica_clients: list[httpx.Client], lb_client: httpx.Client
) -> None:
    """Bit rot on disk is invisible to clients until pulled; scrub must find it on its own."""
    repo = new_repo("scrub")
    image = push_random_image(replica_clients[0], repo, "v1")
    victim = digest_of(image.layers[0])
    path = blob_file(topology.root, repo, victim)
    with open(path, "r+b") as f:
        head = f.read(16)
        f.seek(0)
        f.write(bytes(x ^ 0xFF for x in head))
    assert path.stat().st_size == len(image.layers[0])

    report_path = topology.root / ".ocistore" / "scrub-report.json"
    found: dict[str, Any] | None = None

    def reported() -> bool:
        nonlocal found
        try:
            found = _mismatch_for(json.loads(report_path.read_text()), victim)
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return found is not None

    timeout = SCRUB_INTERVAL + 6.0
    assert wait_until(reported, timeout, 0.2) is not None, (
        f"{victim} not reported as a digest mismatch in {report_path} within {timeout}s "
        f"(report exists: {report_path.exists()})"
    )
    assert found is not None
    assert found["repo"] == repo, found  # the stored report keeps Finding's own field names
    report = json.loads(report_path.read_text())
    healthy = digest_of(image.config)
    assert _mismatch_for(report, healthy) is None, f"intact blob {healthy} reported as corrupt"
    named = wait_until(lambda: victim.split(":", 1)[1] in topology.process_log("scrub-worker"), 10, 0.05)
    assert named is not None, "no log line names the corrupt blob"  # logged as the pass goes, may trail the report
    # The report endpoint (any replica: they read the same stored report) shows it too.
    for client in (*replica_clients, lb_client):
        resp = client.get("/scrub/report")
        assert resp.status_code == 200, resp.text
        row = _mismatch_for(resp.json(), victim)
        assert row is not None, resp.text
        assert row["repository"] == repo, row  # the endpoint's rows name it `repository`


def test_redis_down_and_back_pushes_and_pulls_keep_working_and_gc_resumes(
    topology: OcistoreTopology, redis_server: RedisServer, replica_clients: list[httpx.Client],
    lb_client: httpx.Client,
) -> None:
    """Redis is for maintenance only: its outage must not stop the registry, and GC picks up after."""
    a, b = replica_clients
    repo = new_repo("redis")
    before = push_random_image(a, repo, "before")
    redis_server.stop()
    try:
        during = push_random_image(a, repo, "during")
        assert_pullable(b, repo, "during", during)
        assert_pullable(b, repo, "before", before)
        assert_pullable(lb_client, repo, "during", during)
        for url in topology.replicas:
            assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
            # Redis is shared by every replica: reported, never a reason to take them all out.
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200, f"{url}/readyz with Redis down: {ready.status_code} {ready.text}"
            assert ready.json()["status"] == "degraded" and ready.json()["dependencies"]["redis"] is False, ready.text
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            assert 'ocistore_dependency_up{dependency="redis"} 0.0' in metrics, metrics
        # Tagging through both replicas still serialises on the repository: a local store's
        # locks live in the store itself, so Redis plays no part in them.
        push_manifest(b, repo, "during-b", during.manifest)
    finally:
        redis_server.restart()

    def readyz_ok(url: str) -> Callable[[], bool]:
        return lambda: httpx.get(f"{url}/readyz", timeout=10).json()["dependencies"]["redis"] is True

    for url in topology.replicas:
        assert wait_until(readyz_ok(url), 15.0, 0.2) is not None, f"{url}/readyz not ok 15s after Redis came back"
    after = push_random_image(b, repo, "after")
    assert_pullable(a, repo, "after", after)
    assert sorted(all_tags(lb_client, repo)) == ["after", "before", "during", "during-b"]

    doomed = push_random_image(a, repo)
    delete_manifest(a, repo, doomed.digest)
    timeout = GC_DELAY + GC_MARGIN + 5.0
    assert wait_until(all_gone(topology.root, repo, image_digests(doomed)[1:]), timeout, 0.1) is not None, (
        f"GC did not resume after Redis came back: blobs of a deleted manifest still there after {timeout}s"
    )
    for image in (before, during, after):
        for d in image_digests(image):
            assert blob_file(topology.root, repo, d).exists(), f"tagged {d} collected"


def test_every_replica_answers_metrics_for_the_whole_host(topology: OcistoreTopology) -> None:
    """The topology's processes share one PROMETHEUS_MULTIPROC_DIR: whichever replica a scrape
    reaches (through the balancer, at random) counts what every replica and worker did."""
    marker = f"/v2/metrics-{uuid.uuid4().hex[:8]}/tags/list"
    for url in topology.replicas:  # a request straight to each replica: each counts its own
        for _ in range(3):
            assert httpx.get(f"{url}{marker}", timeout=30).status_code == 404

    def unknown_tag_lists(url: str) -> float:
        return metric(scrape(url)[1], "ocistore_http_requests_total", route="/v2/{name}/tags/list", code="404")

    counts = [unknown_tag_lists(url) for url in topology.replicas]
    assert counts[0] == counts[1] >= 3 * len(topology.replicas), counts
    text = httpx.get(f"{topology.replicas[0]}/metrics", timeout=30).text
    assert "ocistore_worker_messages_total" in text or "ocistore_queue_messages" in text
