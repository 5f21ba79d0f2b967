"""Redis killed under load and started again, empty, on the same port, with the store's locks
living in it (an S3 store on moto: Redis leases are what keep two replicas from writing one
index.json at once; a local store would keep them as flocks and Redis would play no part).

Two `ocistore-api` replicas and a gc-worker; pushers spread every image over both replicas,
a puller reads images pushed before.  Redis goes three times: killed for DOWN_SECONDS; killed
and started again at once (as a supervisor does: as soon as both replicas refused a write);
frozen for FREEZE_SECONDS (SIGSTOP: a hung Redis, every lock call in flight waits its socket
timeout).  While it is away every write answers 503 with Retry-After (the
pushers try those again), none is acknowledged, and pulls go on, those that would renew their
blob's age (a lock of its digest) included.  Once it is back, both replicas acknowledge writes
again within RECOVERY_BOUND, BLIP_BOUND after the short ones: the lock client must hold writes
back neither for its breaker's longest cool-down nor for the TTL of locks whose release Redis
missed.  Not one acknowledged write is lost: no replica goes on with a lock from before the
restart, or with a stale pooled connection that swallows a write.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import OCI_MANIFEST, digest_of
from tests.moto import MotoServer
from tests.servers import RedisServer, running_redis, wait_until, write_config
from tests.topology.faults import (
    KIB,
    Cluster,
    Image,
    Ledger,
    Pusher,
    Refused,
    Replica,
    Worker,
    index_problems,
    lost_writes,
    random_image,
    rate,
    run_pushers,
)

PUSHERS = 4
REPOS = 2
WARM_SECONDS = 2.0  # of load before Redis goes, and again once both replicas took writes
WARM_ACKS = 6
DOWN_SECONDS = 4.0
# Long enough for lock calls sent after the breaker's first cool-down to time out too.
FREEZE_SECONDS = 2.5
GC_DELAY = 6.0
RECOVERY_BOUND = 15.0  # from Redis answering again to a write acknowledged by each replica
BLIP_BOUND = 4.0  # after a blip or a freeze (the breaker's first cool-down is 0.5 s, a lease's TTL 6 s)
PHASE_TIMEOUT = 30.0
CHUNKED_SIZES = (300 * KIB, 600 * KIB)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    procs = Cluster()
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


class Puller(threading.Thread):
    """Pulls images pushed before the outage, from each replica in turn, until stopped."""

    def __init__(self, replicas: list[Replica], images: list[tuple[str, str, Image]], stop: threading.Event) -> None:
        super().__init__(name="puller", daemon=True)
        self.replicas, self.images, self.stop_event = replicas, images, stop
        self.pulls: list[tuple[float, int]] = []  # (time.time(), which image) of each whole pull
        self.failures: list[str] = []

    def run(self) -> None:
        clients = [httpx.Client(base_url=r.url, timeout=30) for r in self.replicas]
        n = 0
        try:
            while not self.stop_event.is_set():
                which = n % len(self.images)
                repo, tag, image = self.images[which]
                client = clients[n % len(clients)]
                n += 1
                try:
                    manifest = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                    blob = client.get(f"/v2/{repo}/blobs/{digest_of(image.small)}")
                except httpx.TransportError as exc:
                    self.failures.append(f"pull {repo}:{tag} via {client.base_url}: {type(exc).__name__} {exc}")
                    continue
                if manifest.status_code != 200 or manifest.content != image.manifest:
                    self.failures.append(f"pull {repo}:{tag} via {client.base_url}: manifest {manifest.status_code}")
                elif blob.status_code != 200 or blob.content != image.small:
                    self.failures.append(f"pull {repo}:{tag} via {client.base_url}: blob {blob.status_code}")
                else:
                    self.pulls.append((time.time(), which))
                self.stop_event.wait(0.05)
        finally:
            for c in clients:
                c.close()


def first_ack_after(ledger: Ledger, replica: str, since: float) -> float | None:
    """When `replica` first acknowledged a write (blob or tag) sent after `since`."""
    with ledger.lock:
        done = [a.done for a in ledger.acks if a.replica == replica and a.sent >= since]
    return min(done) if done else None


def acked_by_all(ledger: Ledger, replicas: list[Replica], since: float) -> Callable[[], bool]:
    return lambda: all(first_ack_after(ledger, r.name, since) is not None for r in replicas)


class Prober:
    """Tags an image already pushed through a replica: whether the replica refuses writes now.

    The pushers alone cannot say: each may be trying again a step on the same replica."""

    def __init__(self, pusher: Pusher, image: Image) -> None:
        self.pusher, self.image, self.n = pusher, image, 0

    def refuses(self, replica: Replica) -> bool:
        self.n += 1
        try:
            ack = self.pusher.push_tag(self.image, f"probe-{self.n}", replica)
        except Refused:
            return True
        self.pusher.ledger.ack(ack)  # taken: a write like any other, to be kept
        return False

    def all_refuse(self, replicas: list[Replica]) -> Callable[[], bool]:
        """A predicate: each replica has refused a probe (each is asked until it has)."""
        refused: set[str] = set()

        def every() -> bool:
            refused.update(r.name for r in replicas if r.name not in refused and self.refuses(r))
            return len(refused) == len(replicas)
        return every


@dataclass
class Outage:
    how: str
    killed_at: float  # Redis dead (SIGKILL, reaped) or frozen (SIGSTOP)
    restarted_at: float  # answering again on its port (empty after a kill)
    recovered: dict[str, float]  # replica -> seconds from restarted_at to its first acknowledged write
    seed_mtimes: list[float]  # the stored age of each pulled image's blob as Redis went

    def describe(self) -> str:
        return (f"down {self.restarted_at - self.killed_at:.2f}s, writes back after "
                + ", ".join(f"{name} {s:.2f}s" for name, s in self.recovered.items()))


def outage(redis: RedisServer, gone: threading.Event, ledger: Ledger, replicas: list[Replica],
           prober: Prober, seed_mtimes: Callable[[], list[float]], how: str, down: float, bound: float) -> Outage:
    """Take Redis away (`kill`: SIGKILL, then started again empty on its port; `freeze`:
    SIGSTOP, then SIGCONT) once both replicas refused a write and `down` seconds passed, and
    time the recovery from when it answers again."""
    assert redis.proc is not None
    gone.set()
    pid = redis.proc.pid
    os.kill(pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    if how == "kill":
        redis.proc.wait()
    killed_at = time.time()
    mtimes = seed_mtimes()
    every = prober.all_refuse(replicas)
    try:
        assert wait_until(lambda: every() and time.time() >= killed_at + down, PHASE_TIMEOUT, 0.01), (
            f"not every replica refused a write while Redis was {how}ed: {ledger.failures[:3]}")
    finally:
        if how == "kill":
            redis.start()  # the same port, empty: no persistence
        else:
            os.kill(pid, signal.SIGCONT)
            assert wait_until(redis.ping, 10, 0.01)
    restarted_at = time.time()
    wait_until(acked_by_all(ledger, replicas, restarted_at), bound + 5, 0.01)
    recovered = {r.name: at - restarted_at for r in replicas
                 if (at := first_ack_after(ledger, r.name, restarted_at)) is not None}
    return Outage(how, killed_at, restarted_at, recovered, mtimes)


def test_redis_killed_and_restarted_under_load_loses_no_acknowledged_write(
        tmp_path: Path, own_redis: RedisServer, moto_s3: MotoServer, cluster: Cluster) -> None:
    bucket = moto_s3.new_bucket()
    # A short gcDelay, so pulls of the images pushed first renew them (a lock of their digest)
    # while Redis is down; no deletion, so no GC but the sweep at the worker's start.
    storage = {"storageDriver": moto_s3.driver_params(bucket), "gcDelay": f"{GC_DELAY:g}s", "gcInterval": "1h"}
    _, _, _, config = write_config(tmp_path, storage, {"redis": own_redis.url})
    replicas = [cluster.add(Replica(f"api-{i + 1}", config, tmp_path)) for i in range(2)]
    for r in replicas:
        r.start()
    gc_worker = cluster.add(Worker("ocistore-gc-worker", config, tmp_path))
    repos = [f"redis/r{i}-{uuid.uuid4().hex[:6]}" for i in range(REPOS)]

    redis_gone = threading.Event()  # once set, a 503 with Retry-After is tried again, not a failure
    ledger = Ledger(allow_refused=redis_gone.is_set)
    stop = threading.Event()
    deadline = time.monotonic() + 4 * PHASE_TIMEOUT

    # Images to pull throughout, pushed first (through the pushers' own steps, so recorded too).
    seed = Pusher("seed", repos[0], replicas, ledger, stop, deadline, CHUNKED_SIZES)
    existing: list[tuple[str, str, Image]] = []
    for i in range(2):
        image = random_image(seed.rng, 300 * KIB)
        seed.push(image, f"seed-{i}", replicas)
        existing.append((repos[0], f"seed-{i}", image))
    prober = Prober(seed, existing[0][2])

    def seed_mtimes() -> list[float]:
        """When each pulled blob was last written or renewed, as the store says (what the server reads)."""
        s3 = moto_s3.client()
        return [s3.head_object(Bucket=bucket, Key=f"{repo}/blobs/sha256/{digest_of(image.small)[7:]}")
                ["LastModified"].timestamp() for repo, _, image in existing]

    pushers = [Pusher(f"p{i}", repos[i % REPOS], replicas, ledger, stop, deadline, CHUNKED_SIZES)
               for i in range(PUSHERS)]
    puller = Puller(replicas, existing, stop)
    threads = [*run_pushers(pushers), puller]
    puller.start()

    def warm_since(since: float) -> Callable[[], bool]:
        def warm() -> bool:
            with ledger.lock:
                n = sum(1 for a in ledger.acks if a.kind == "tag" and a.sent >= since)
            return n >= WARM_ACKS and time.time() >= since + WARM_SECONDS
        return warm

    outages: list[Outage] = []
    try:
        began = time.time()
        assert wait_until(warm_since(began), PHASE_TIMEOUT, 0.05), f"no load: {ledger.failures[:3]}"
        for how, down, bound in (("kill", DOWN_SECONDS, RECOVERY_BOUND), ("kill", 0.0, BLIP_BOUND),
                                 ("freeze", FREEZE_SECONDS, BLIP_BOUND)):
            outages.append(outage(own_redis, redis_gone, ledger, replicas, prober, seed_mtimes, how, down, bound))
            assert wait_until(warm_since(time.time()), PHASE_TIMEOUT, 0.05), f"no load: {ledger.failures[:3]}"
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    ended = time.time()
    seed.close()

    assert not any(t.is_alive() for t in threads), "a pusher or the puller is still running"
    assert not ledger.failures, f"{len(ledger.failures)} failed pushes: {ledger.failures[:5]}"
    assert not puller.failures, f"{len(puller.failures)} failed pulls: {puller.failures[:5]}"
    long, blip, freeze = outages
    with ledger.lock:
        # Sent once Redis was dead and answered before it was back: written under no lock.
        unlocked = [a for a in ledger.acks for o in outages if a.sent > o.killed_at and a.done < o.restarted_at]
        refused_down = sum(1 for t, _ in ledger.refused if long.killed_at <= t < long.restarted_at)
        refused = len(ledger.refused)
    pulls_down = sum(1 for t, _ in puller.pulls if long.killed_at <= t < long.restarted_at)
    # Pulls that found their blob due a renewal (older than half of gcDelay), which takes the
    # digest's lock: without Redis it is skipped, and the pull goes on.
    renewing = sum(1 for t, i in puller.pulls
                   if long.killed_at <= t < long.restarted_at and t > long.seed_mtimes[i] + GC_DELAY / 2 + 0.2)
    problems = {r.name: lost_writes(r.url, ledger) for r in replicas}
    indexes = index_problems(
        lambda repo: bytes(moto_s3.client().get_object(Bucket=bucket, Key=f"{repo}/index.json")["Body"].read()), ledger)
    back = long.restarted_at + max(long.recovered.values(), default=0)
    print(f"\n{ledger.pushes} pushes ({len(ledger.tags())} tags, {len(ledger.blobs())} blobs acknowledged) in "
          f"{ended - began:.1f}s: {rate(ledger, began, long.killed_at):.1f} pushes/s before Redis went, "
          f"{rate(ledger, back, blip.killed_at):.1f}/s after; {refused} writes refused (503) in all, "
          f"{refused_down} while Redis was down for {long.restarted_at - long.killed_at:.1f}s, when "
          f"{pulls_down} pulls were served ({renewing} of blobs due a renewal)")
    print(f"outage: {long.describe()}; blip: {blip.describe()}; freeze: {freeze.describe()}; "
          f"lost: {sum(len(p) for p in problems.values())}")
    assert not unlocked, f"writes acknowledged while Redis was down: {unlocked[:5]}"
    assert pulls_down > 0, "no pull was served while Redis was down"
    assert renewing > 0, "no pull during the outage was of a blob due a renewal: that path went untested"
    assert not any(problems.values()), {k: v[:10] for k, v in problems.items()}
    assert not indexes, indexes[:10]
    for o, bound in ((long, RECOVERY_BOUND), (blip, BLIP_BOUND), (freeze, BLIP_BOUND)):
        assert len(o.recovered) == len(replicas), f"a replica took no write {bound + 5}s after Redis came back"
        slow = {name: s for name, s in o.recovered.items() if s > bound}
        assert not slow, f"writes resumed more than {bound}s after Redis came back: {o.describe()}"
    assert gc_worker.proc.poll() is None, "the gc-worker died with Redis"
