"""A gc-worker killed with SIGKILL in the middle of a GC: another worker finishes the job
within a bound, not at the next gcInterval (Redis hands a dead worker's unacknowledged
messages on once its heartbeat is old; see ocistore.messaging)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import delete_manifest, push_random_image
from tests.servers import (
    BIN,
    OcistoreServer,
    RedisServer,
    free_port,
    running_redis,
    stop_process,
    wait_http,
    wait_until,
)

ORPHANS = 4000
RESUMED_WITHIN = 60.0


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc


@pytest.fixture
def processes() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        for proc in p.procs:
            stop_process(proc)


def plant_orphans(blobs: Path, count: int) -> list[Path]:
    """Blobs no manifest references, old enough for GC: written into the layout directly."""
    blobs.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    files = []
    for i in range(count):
        data = f"orphan {i} {os.urandom(8).hex()}".encode()
        path = blobs / hashlib.sha256(data).hexdigest()
        path.write_bytes(data)
        os.utime(path, (old, old))
        files.append(path)
    return files


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own: on a shared one, other suites' workers would take its jobs."""
    with running_redis(tmp_path) as server:
        yield server


def test_a_gc_interrupted_by_a_killed_worker_is_finished_by_the_next(
        tmp_path: Path, own_redis: RedisServer, processes: Processes) -> None:
    config = OcistoreServer(tmp_path, storage={"gcDelay": "1s"}, extra={"redis": own_redis.url})
    port = free_port()
    api = processes.start("ocistore-api", str(config.config_path), "--port", str(port), log=tmp_path / "api.log")
    wait_http(f"http://127.0.0.1:{port}/v2/", api)
    first = processes.start("ocistore-gc-worker", str(config.config_path), log=tmp_path / "gc1.log")

    repo = f"killed/{os.urandom(4).hex()}"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        kept = push_random_image(client, repo, "kept")
        doomed = push_random_image(client, repo)
        orphans = plant_orphans(config.root / repo / "blobs" / "sha256", ORPHANS)
        delete_manifest(client, repo, doomed.digest)  # schedules a GC of the repository

    def remaining() -> int:
        return sum(p.exists() for p in orphans)

    assert wait_until(lambda: remaining() < ORPHANS, 60, 0.02), "the first worker never started the GC"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    left = remaining()
    assert left > 0, "the GC ended before the worker was killed: the test proved nothing"

    started = time.monotonic()
    processes.start("ocistore-gc-worker", str(config.config_path), log=tmp_path / "gc2.log")
    assert wait_until(lambda: remaining() == 0, RESUMED_WITHIN + 30, 0.2), (
        f"{remaining()} of {left} orphans still there {RESUMED_WITHIN + 30:.0f}s after a worker came back")
    resumed = time.monotonic() - started
    print(f"GC killed with {left} of {ORPHANS} orphans left; finished {resumed:.1f}s after a worker came back")
    assert resumed <= RESUMED_WITHIN
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        assert client.get(f"/v2/{repo}/manifests/kept").content == kept.manifest
