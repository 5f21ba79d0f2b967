"""One of two API replicas killed with SIGKILL under load, then brought back.

Two `ocistore-api` processes over one store (local disk, or S3 on moto with Redis leases),
a gc-worker collecting behind a churn of pushed-and-deleted images, and pushers spreading
every image over both replicas (a chunked upload's PATCHes alternate between them).  One
replica is killed while requests are in flight to it, among them an upload session's PATCH
stalled half-way.  Then:

- not one acknowledged write is lost: every tag answered 201 is listed and pulls with its
  digest, every blob answered 201 is HEAD 200 with its size, through the survivor and,
  once it is back, through the restarted replica; every index.json parses and holds them;
- no push fails but for requests the killed process had: a pusher cut off pushes again on
  the survivor, and that succeeds;
- the session begun on the killed replica is resumed on the survivor from the range it
  reports, and completes with the right digest.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import digest_of
from tests.moto import MotoServer
from tests.servers import RedisServer, running_redis, wait_until, write_config
from tests.topology.faults import (
    KIB,
    MIB,
    Cluster,
    Failed,
    Gone,
    Ledger,
    Pusher,
    Replica,
    Worker,
    index_problems,
    lost_writes,
    random_image,
    rate,
    relative,
    run_pushers,
)

PUSHERS = 6
REPOS = 3
# Each phase (both replicas, the survivor alone, both again) lasts at least this long and sees
# this many tags acknowledged (moto serves S3 from one Python process, at a tenth of the local
# store's pace); the last one also lasts until the gc-worker has collected the churn.
PHASE_SECONDS = 3.0
ACKS_PER_PHASE = {"local": 15, "s3": 5}
CHUNKED_SIZES = {"local": (300 * KIB, 900 * KIB), "s3": (300 * KIB, 600 * KIB)}
PHASE_TIMEOUT = 30.0
GC_DELAY = 8.0
HOP_FIRST = 1 * MIB  # the hop session's first chunk, answered 202 by the replica to be killed
HOP_STALLED = 2 * MIB  # then a PATCH that stops half-way, in flight when it is killed
HOP_TIMEOUT = 25.0  # on S3 the dead replica's lease on the session lasts up to its 6 s TTL


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    procs = Cluster()
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own: on a shared one, other suites' workers would take its jobs."""
    with running_redis(tmp_path) as server:
        yield server


class Churn(Pusher):
    """Pushes an image and deletes it again, so the gc-worker has collections to run under the
    load.  Its writes are not kept, so they go to a ledger of their own."""

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                image = random_image(self.rng, 64 * 1024)
                replica = self.rng.choice(self.up())
                try:
                    self.push(image, f"churn-{n}", [replica])
                    self.send(replica, "DELETE", f"/v2/{self.repo}/manifests/{image.digest}", (202,))
                except Gone:
                    pass
                n += 1
                self.stop.wait(0.3)
        except Failed as exc:
            self.ledger.fail(f"churn: {exc}")
        finally:
            self.close()


class StalledPatch(threading.Thread):
    """A PATCH whose body stops half-way until released: in flight for as long as the test wants."""

    def __init__(self, url: str, location: str, data: bytes, start: int) -> None:
        super().__init__(name="stalled-patch", daemon=True)
        self.url, self.location, self.data, self.start_at = url, location, data, start
        self.half_sent = threading.Event()
        self.release = threading.Event()
        self.outcome: httpx.Response | Exception | None = None

    def body(self) -> Iterator[bytes]:
        half = len(self.data) * 3 // 4
        yield self.data[:half]
        self.half_sent.set()  # asked for more: the first part is in the socket
        self.release.wait(60)
        yield self.data[half:]

    def run(self) -> None:
        end = self.start_at + len(self.data) - 1
        try:
            with httpx.Client(base_url=self.url, timeout=60) as client:
                self.outcome = client.patch(relative(self.location), content=self.body(), headers={
                    "Content-Type": "application/octet-stream", "Content-Range": f"{self.start_at}-{end}"})
        except Exception as exc:
            self.outcome = exc


def session_size(url: str, location: str) -> int:
    resp = httpx.get(f"{url}{relative(location)}", timeout=10)
    assert resp.status_code == 204, (resp.status_code, resp.text)
    return int(resp.headers["Range"].split("-")[1]) + 1


def resume_on(survivor: Replica, location: str, data: bytes) -> tuple[int, float, int]:
    """Finish the session on `survivor` from the range it reports, trying again while the
    session is still held (416: a dead holder's lease has not expired yet).

    Returns (the offset it resumed from, seconds it took, 416s met)."""
    started = time.monotonic()
    held = 0
    digest = digest_of(data)
    with httpx.Client(base_url=survivor.url, timeout=60) as client:
        while time.monotonic() - started < HOP_TIMEOUT:
            status = client.get(relative(location))
            assert status.status_code == 204, f"session unknown on the survivor: {status.status_code} {status.text}"
            offset = int(status.headers["Range"].split("-")[1]) + 1
            assert HOP_FIRST <= offset <= len(data), f"the survivor reports {offset} bytes of {len(data)}"
            headers = {"Content-Type": "application/octet-stream"}
            if offset < len(data):
                headers["Content-Range"] = f"{offset}-{len(data) - 1}"
            resp = client.patch(relative(location), content=data[offset:], headers=headers)
            if resp.status_code == 416:
                held += 1
                continue
            assert resp.status_code == 202, f"resuming PATCH: {resp.status_code} {resp.text}"
            assert resp.headers["Range"] == f"0-{len(data) - 1}", resp.headers
            done = client.put(relative(resp.headers["Location"], digest),
                              headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, f"closing PUT: {done.status_code} {done.text}"
            assert done.headers["Docker-Content-Digest"] == digest
            return offset, time.monotonic() - started, held
    raise AssertionError(f"the session could not be resumed on the survivor within {HOP_TIMEOUT}s ({held} 416s)")


def phase_done(ledger: Ledger, replica: str | None, since: float, acks: int) -> Callable[[], bool]:
    """PHASE_SECONDS have passed since `since`, and `acks` tags sent since then were
    acknowledged by `replica` (any, for None)."""
    def enough() -> bool:
        with ledger.lock:
            n = sum(1 for a in ledger.acks if a.kind == "tag" and a.sent >= since and replica in (None, a.replica))
        return n >= acks and time.time() >= since + PHASE_SECONDS
    return enough


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_replica_killed_mid_load_loses_no_acknowledged_write(
        store: str, tmp_path: Path, own_redis: RedisServer, cluster: Cluster, request: pytest.FixtureRequest) -> None:
    storage: dict[str, object] = {"gcDelay": f"{GC_DELAY:g}s", "gcInterval": "1h"}
    moto: MotoServer | None = request.getfixturevalue("moto_s3") if store == "s3" else None
    bucket = moto.new_bucket() if moto is not None else ""
    if moto is not None:
        storage["storageDriver"] = moto.driver_params(bucket)
    root, _, _, config = write_config(tmp_path, storage, {"redis": own_redis.url})

    def read_index(repo: str) -> bytes:
        """The stored index.json itself, from wherever the store keeps it."""
        if moto is None:
            return (root / repo / "index.json").read_bytes()
        return bytes(moto.client().get_object(Bucket=bucket, Key=f"{repo}/index.json")["Body"].read())
    victim = cluster.add(Replica("api-victim", config, tmp_path))
    survivor = cluster.add(Replica("api-survivor", config, tmp_path))
    for r in (victim, survivor):
        r.start()
    gc_worker = cluster.add(Worker("ocistore-gc-worker", config, tmp_path))
    replicas = [victim, survivor]
    repos = [f"killed/r{i}-{uuid.uuid4().hex[:6]}" for i in range(REPOS)]

    # An upload session begun on the replica to be killed, its second PATCH left in flight.
    hop = os.urandom(HOP_FIRST + HOP_STALLED)
    with httpx.Client(base_url=victim.url, timeout=30) as client:
        opened = client.post(f"/v2/{repos[0]}/blobs/uploads/")
        assert opened.status_code == 202, opened.text
        first = client.patch(relative(opened.headers["Location"]), content=hop[:HOP_FIRST], headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"0-{HOP_FIRST - 1}"})
        assert first.status_code == 202, first.text
    location = first.headers["Location"]
    stalled = StalledPatch(victim.url, location, hop[HOP_FIRST:], HOP_FIRST)
    stalled.start()
    assert stalled.half_sent.wait(10), "the stalled PATCH never got its first part out"
    if store == "local":
        # Bytes reach the session file as they arrive (1 MiB at a time): wait for some.
        assert wait_until(lambda: session_size(survivor.url, location) > HOP_FIRST, 10, 0.02), (
            "the stalled PATCH's first part never reached the session file")

    ledger, churn_ledger = Ledger(), Ledger()
    stop = threading.Event()
    deadline = time.monotonic() + 4 * PHASE_TIMEOUT
    pushers = [Pusher(f"p{i}", repos[i % REPOS], replicas, ledger, stop, deadline, CHUNKED_SIZES[store])
               for i in range(PUSHERS)]
    churn = Churn("churn", repos[1], replicas, churn_ledger, stop, deadline)
    threads = run_pushers([*pushers, churn])
    try:
        began = time.time()
        warm = phase_done(ledger, None, began, ACKS_PER_PHASE[store])
        assert wait_until(lambda: warm() and ledger.flying(victim.name, "PATCH") > 0, PHASE_TIMEOUT, 0.002), (
            f"no load to kill into: {ledger.failures[:3]}")
        with ledger.lock:
            in_flight = {k: v for k, v in ledger.in_flight.items() if k[0] == victim.name and v}
        victim.kill()
        killed_at = time.time()
        stalled.release.set()
        stalled.join(30)
        assert isinstance(stalled.outcome, httpx.TransportError), f"the stalled PATCH got {stalled.outcome!r}"

        resumed_from, hop_seconds, held = resume_on(survivor, location, hop)

        assert wait_until(phase_done(ledger, survivor.name, killed_at, ACKS_PER_PHASE[store]), PHASE_TIMEOUT, 0.05), (
            f"the survivor took no load after the kill: {ledger.failures[:3]}")
        down_for = time.time()
        victim.start()
        restarted_at = time.time()
        assert wait_until(phase_done(ledger, victim.name, restarted_at, ACKS_PER_PHASE[store]), PHASE_TIMEOUT, 0.05), (
            f"the restarted replica took no pushes: {ledger.failures[:3]}")
        collected = f"gc {churn.repo}: removed"
        assert wait_until(lambda: collected in gc_worker.log(), GC_DELAY + PHASE_TIMEOUT, 0.1), (
            "the gc-worker collected nothing under the load")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    ended = time.time()

    assert not any(t.is_alive() for t in threads), "a pusher is still running"
    assert not ledger.failures, f"{len(ledger.failures)} failed pushes: {ledger.failures[:5]}"
    assert not churn_ledger.failures, churn_ledger.failures[:5]
    assert ledger.gone, "no request was cut off by the kill: the test proved nothing"
    tags, blobs = ledger.tags(), ledger.blobs()
    problems = {r.name: lost_writes(r.url, ledger) for r in (survivor, victim)}
    indexes = index_problems(read_index, ledger)
    with httpx.Client(base_url=victim.url, timeout=30) as client:
        got = client.get(f"/v2/{repos[0]}/blobs/{digest_of(hop)}")
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest_of(hop)[7:], (
            f"the resumed blob through the restarted replica: {got.status_code}")
    print(f"\n[{store}] {ledger.pushes} pushes ({len(tags)} tags, {len(blobs)} blobs acknowledged) in "
          f"{ended - began:.1f}s: {rate(ledger, began, killed_at):.1f} pushes/s on two replicas, "
          f"{rate(ledger, killed_at, down_for):.1f}/s on the survivor, "
          f"{rate(ledger, restarted_at, ended):.1f}/s after the restart ({restarted_at - down_for:.1f}s to start)")
    print(f"[{store}] killed with {sum(in_flight.values())} requests in flight to it {in_flight}; "
          f"{len(ledger.gone)} cut off, {ledger.retried_pushes} pushes retried on the survivor; "
          f"hop session resumed from byte {resumed_from} of {len(hop)} in {hop_seconds:.2f}s ({held} 416s); "
          f"lost: {sum(len(p) for p in problems.values())}")
    assert not any(problems.values()), {k: v[:10] for k, v in problems.items()}
    assert not indexes, indexes[:10]
    assert gc_worker.proc.poll() is None, "the gc-worker died"
