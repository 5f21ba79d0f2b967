"""Small operations with one API replica and with more, against docker-registry in the same run.

`ocistore topology` runs the scaled shape on one machine: redis-server, N `ocistore-api`
replicas, a gc-worker and a scrub-worker. The client here opens its connections round-robin
across the replicas (as a load balancer would), skipping the topology's own Python balancer so
that its cost does not count. Each figure is the median over the repeats, with the CPU per 1,000
operations split by who paid it: the API replicas, Redis (shared by all replicas: it does not
scale with them), the workers, and with --s3 the storage service (moto, shared too). That split
is what the README's guidance on N replicas is computed from.

    .venv/bin/python bench/replicas.py [--quick] [--s3] [--replicas 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from http1 import Client
from registries import (
    OCISTORE_BINARY,
    FilesystemStorage,
    S3Storage,
    Server,
    StorageBackend,
    _server_env,
    _stat_fields,
    _wait_ready,
    free_port,
    start_peer,
)
from wire import Registry
from workloads import FULL, QUICK, S3, S3_QUICK, Meter, Sample, Sizes, Target, Workload
from workloads import WORKLOADS as ALL_WORKLOADS

SMALL = [w for w in ALL_WORKLOADS if not w.bulk]
RESULTS = Path(__file__).resolve().parent / "results" / "replicas.json"
STATE_TIMEOUT = 60.0
_TICKS = os.sysconf("SC_CLK_TCK")
# The full sizes, without the 10,000-repository catalog (each configuration starts on fresh data).
REPLICAS = dataclasses.replace(FULL, large_repo_count=0)


@dataclass
class Topology:
    """A running `ocistore topology` and the roles of its processes."""

    server: Server
    replicas: list[str]
    api_pids: list[int]
    redis_pid: int | None
    worker_pids: list[int]

    def cpu_of(self, pids: list[int]) -> float:
        """User+system seconds of live processes `pids` (the topology's children never exit)."""
        total = 0
        for pid in pids:
            fields = _stat_fields(pid)
            if fields:
                total += int(fields[11]) + int(fields[12])
        return total / _TICKS


def start_topology(storage: StorageBackend, replicas: int) -> Topology:
    """`ocistore topology --replicas N` on a fresh directory; waits for its state file and every replica."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ocistore-bench-topology{replicas}-"))
    (workdir / "data").mkdir()
    config = {
        "distSpecVersion": "1.1.0",
        "storage": storage.ocistore_storage(workdir / "data"),
        "http": {"address": "127.0.0.1", "port": str(free_port())},
        "log": {"level": "warn"},
    }
    (workdir / "config.json").write_text(json.dumps(config))
    state = workdir / "state.json"
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen([OCISTORE_BINARY, "topology", "--replicas", str(replicas), "--state", str(state),
                                 "--logs", str(workdir / "logs"), str(workdir / "config.json")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                env=_server_env(), start_new_session=True)
    server = Server(f"ocistore x{replicas}", proc, "", workdir)
    deadline = time.monotonic() + STATE_TIMEOUT
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"topology did not start:\n{server.log_tail()}")
        time.sleep(0.1)
    info = json.loads(state.read_text())
    pids: list[int] = info["pids"]
    spawned_redis = len(pids) == replicas + 3
    redis_pid = pids[0] if spawned_redis else None
    api = pids[1:replicas + 1] if spawned_redis else pids[:replicas]
    server.base_url = info["replicas"][0]
    for url in info["replicas"]:
        _wait_ready(Server(server.name, proc, url, workdir))
    topology = Topology(server, info["replicas"], api, redis_pid, pids[len(pids) - 2:])
    _wait_settled(topology)
    return topology


def _wait_settled(topology: Topology) -> None:
    """Until the workers have finished starting (no CPU used for a second): their imports must
    not be charged to the first workload."""
    deadline = time.monotonic() + STATE_TIMEOUT
    before = topology.cpu_of(topology.worker_pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = topology.cpu_of(topology.worker_pids)
        if now - before < 0.02:
            return
        before = now


@dataclass
class Split:
    """CPU seconds per role over one timed span."""

    api: float = 0.0
    redis: float = 0.0
    gc_worker: float = 0.0
    scrub_worker: float = 0.0


@dataclass
class Result:
    """One configuration's samples, and the CPU split of each."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)


def _meter(topology: Topology | None, server: Server, storage: StorageBackend,
           splits: list[Split]) -> Meter:
    """A Meter on the whole server; beside it, for a topology, the CPU split by role per span."""
    if topology is None:
        return Meter(server.cpu_seconds, storage.service_cpu)
    readings: list[tuple[float, ...]] = []

    def read() -> float:
        gc, scrub = topology.worker_pids
        reading = (topology.cpu_of(topology.api_pids),
                   topology.cpu_of([topology.redis_pid]) if topology.redis_pid else 0.0,
                   topology.cpu_of([gc]), topology.cpu_of([scrub]))
        readings.append(reading)
        if len(readings) % 2 == 0:
            splits.append(Split(*(after - before for before, after in zip(*readings[-2:], strict=True))))
        return sum(reading)

    return Meter(read, storage.service_cpu)


async def _run(target: Target, workloads: list[Workload], sizes: Sizes) -> None:
    await target.registry.ping()
    for workload in workloads:
        for rep in range(sizes.small_repeats):
            await workload.run(target, sizes, rep)


def measure(storage: StorageBackend, sizes: Sizes, counts: list[int], workloads: list[Workload]) -> list[Result]:
    """The peer, then ocistore with each replica count, one after the other on fresh data."""
    results: list[Result] = []
    for count in [0, *counts]:
        topology = start_topology(storage, count) if count else None
        server = topology.server if topology else start_peer(storage)
        result = Result(server.name)
        try:
            spread = topology.replicas[1:] if topology else []
            client = Client(server.base_url, sizes.concurrency, spread=spread)
            target = Target(server.name, Registry(client), _meter(topology, server, storage, result.splits))
            try:
                uvloop.run(_run(target, workloads, sizes))
            finally:
                client.close()
            result.samples = target.meter.samples
        finally:
            server.stop()
        results.append(result)
    return results


def _median_rate(samples: list[Sample]) -> float:
    return statistics.median(s.units / s.seconds for s in samples)


def _per_k(samples: list[Sample], seconds: list[float]) -> float:
    """CPU seconds per 1,000 operations over all the samples."""
    return 1000 * sum(seconds) / sum(s.units for s in samples)


def report(results: list[Result]) -> dict[str, Any]:
    """Print one table (ops/s; CPU per 1,000 ops by role) and return it as JSON."""
    figures = sorted({s.figure for r in results for s in r.samples}, key=[s.figure for s in results[0].samples].index)
    peer = results[0]
    out: dict[str, Any] = {}
    print(f"{'figure':22} {'server':12} {'ops/s':>8} {'vs peer':>8} {'api':>7} {'redis':>7} {'gc-w':>7} "
          f"{'scrub-w':>7} {'storage':>8}  (CPU s/1k ops)")
    for figure in figures:
        base = _median_rate([s for s in peer.samples if s.figure == figure])
        for result in results:
            index = [i for i, s in enumerate(result.samples) if s.figure == figure]
            samples = [result.samples[i] for i in index]
            rate = _median_rate(samples)
            row: dict[str, float] = {"ops_per_s": rate, "ratio": rate / base}
            if result.splits:
                splits = [result.splits[i] for i in index]
                row["api_cpu"] = _per_k(samples, [split.api for split in splits])
                row["redis_cpu"] = _per_k(samples, [split.redis for split in splits])
                row["gc_worker_cpu"] = _per_k(samples, [split.gc_worker for split in splits])
                row["scrub_worker_cpu"] = _per_k(samples, [split.scrub_worker for split in splits])
            else:
                row["api_cpu"] = _per_k(samples, [s.server_cpu for s in samples])
            if all(s.storage_cpu is not None for s in samples):
                row["storage_cpu"] = _per_k(samples, [s.storage_cpu or 0.0 for s in samples])
            out.setdefault(figure, {})[result.name] = row
            print(f"{figure:22} {result.name:12} {rate:8.0f} {rate / base:7.2f}x {row['api_cpu']:7.3f} "
                  f"{row.get('redis_cpu', 0.0):7.3f} {row.get('gc_worker_cpu', 0.0):7.3f} "
                  f"{row.get('scrub_worker_cpu', 0.0):7.3f} "
                  f"{row.get('storage_cpu', 0.0):8.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--s3", action="store_true", help="on S3 (moto on loopback, a bucket per server)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="API replica counts (default 1 2)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    storage: StorageBackend = S3Storage() if args.s3 else FilesystemStorage()
    sizes = {(False, False): REPLICAS, (True, False): QUICK, (False, True): S3, (True, True): S3_QUICK}[
        (args.quick, args.s3)]
    storage.start()
    try:
        results = measure(storage, sizes, args.replicas, SMALL)
    finally:
        storage.stop()
    table = report(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"storage": storage.name, "figures": table}, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
