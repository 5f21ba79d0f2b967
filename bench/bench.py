"""Benchmark ocistore against CNCF Distribution (docker-registry) on the same machine, same client.

Both servers start side by side on empty temporary directories; each workload then runs on one and
then the other (the order alternating between repeats) so slow drift of the machine hits both
alike. The figures, their ratio ocistore/peer against the targets (bulk >= 1x, small ops >= 2x)
and the server CPU per GB or per 1,000 operations are printed and written to
bench/results/latest.json. Where the servers keep their data is a `StorageBackend`
(registries.py): a local directory each by default; with --s3, one bucket each on a moto server
started on loopback, with smaller sizes (moto is slow) and moto's own CPU reported per figure,
written to bench/results/latest-s3.json.

    .venv/bin/python bench/bench.py [--s3] [--quick] [--only peer|ocistore] [--workload NAME ...]
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop

import report
from http1 import Client
from registries import (
    FilesystemStorage,
    S3Storage,
    Server,
    ServerStartError,
    StorageBackend,
    start_ocistore,
    start_peer,
)
from wire import Registry
from workloads import FULL, QUICK, S3, S3_QUICK, WORKLOADS, Meter, Sample, Sizes, Target, Workload

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
RESULTS_S3 = RESULTS.with_name("latest-s3.json")
BUSY_FRACTION = 0.2
STARTERS = {report.PEER: start_peer, report.OCISTORE: start_ocistore}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line: size preset, which servers, which workloads, where the JSON goes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s3", action="store_true",
                        help="both servers on S3 (moto on loopback, a bucket each), with smaller sizes")
    parser.add_argument("--quick", action="store_true", help="small sizes and counts, for a smoke run")
    parser.add_argument("--only", choices=list(STARTERS), help="run against one server alone")
    parser.add_argument("--workload", action="append", choices=[w.name for w in WORKLOADS],
                        help="run only this workload (repeatable); default all")
    parser.add_argument("--auth", action="store_true",
                        help="both servers with htpasswd logins (bcrypt), every request logged in")
    parser.add_argument("--output", type=Path,
                        help=f"JSON results (default {RESULTS}, or {RESULTS_S3.name} beside it with --s3)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the servers, run the workloads, always stop the servers, then report."""
    args = parse_args(argv)
    storage: StorageBackend = S3Storage() if args.s3 else FilesystemStorage()
    sizes = {(False, False): FULL, (True, False): QUICK, (False, True): S3, (True, True): S3_QUICK}[
        (args.quick, args.s3)]
    output: Path = args.output or (RESULTS_S3 if args.s3 else RESULTS)
    names = [args.only] if args.only else list(STARTERS)
    workloads = [w for w in WORKLOADS if not args.workload or w.name in args.workload]
    print(f"storage {storage.name}; sizes: {sizes.describe()}", flush=True)
    started, busy = time.time(), _host_busy()
    if busy > BUSY_FRACTION:
        print(f"warning: the CPUs were {busy:.0%} busy before start; something else is running and "
              "the figures will be noisy", flush=True)
    try:
        outcome = measure(names, storage, sizes, workloads, args.auth)
    except ServerStartError as exc:
        print(f"error: {exc}\n(to measure one server alone: --only {' or --only '.join(STARTERS)})",
              file=sys.stderr)
        return 2
    table = report.aggregate(outcome.samples)
    print("\n" + report.render(table))
    _print_problems(outcome)
    document = _document(args, sizes, storage, (started, busy), table, outcome)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {output} ({time.time() - started:.0f}s)")
    return 1 if any(outcome.errors.values()) else 0


def measure(names: list[str], storage: StorageBackend, sizes: Sizes, workloads: list[Workload],
            auth: bool = False) -> Outcome:
    """Start the storage and the named servers, run the workloads, and stop them all whatever happens.

    Stopping is guarded three ways: this finally block, atexit, and SIGTERM turned into SystemExit
    (a SIGKILL of the bench is covered by the servers' parent-death signal, but not for moto, which
    tests.moto starts without one).
    """
    servers: list[Server] = []
    atexit.register(_stop_all, servers, storage)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        storage.start()
        for name in names:
            servers.append(STARTERS[name](storage, auth))
        return uvloop.run(run_all(servers, storage, sizes, workloads))
    finally:
        _stop_all(servers, storage)


class Outcome:
    """What a run produced per server: samples, workload errors, and wire anomalies noticed."""

    def __init__(self, names: list[str]) -> None:
        """Empty results for each server name."""
        self.samples: dict[str, list[Sample]] = {name: [] for name in names}
        self.errors: dict[str, dict[str, str]] = {name: {} for name in names}
        self.notes: dict[str, list[str]] = {name: [] for name in names}


async def run_all(servers: list[Server], storage: StorageBackend, sizes: Sizes,
                  workloads: list[Workload]) -> Outcome:
    """Run every workload on every server, interleaved, with one pooled client per server."""
    outcome = Outcome([s.name for s in servers])
    targets = [Target(s.name, Registry(Client(s.base_url, sizes.concurrency, s.login)),
                      Meter(s.cpu_seconds, storage.service_cpu, functools.partial(storage.requests, s.name)))
               for s in servers]
    try:
        for target in targets:
            await target.registry.ping()
        for workload in workloads:
            await _run_workload(workload, targets, servers, sizes, outcome)
    finally:
        for target in targets:
            target.registry.http.close()
    for target in targets:
        outcome.samples[target.name] = target.meter.samples
        outcome.notes[target.name] = sorted(target.registry.notes)
    return outcome


async def _run_workload(workload: Workload, targets: list[Target], servers: list[Server], sizes: Sizes,
                        outcome: Outcome) -> None:
    """Repeat one workload, alternating which server goes first; a failure skips that server's rest."""
    repeats = sizes.bulk_repeats if workload.bulk else sizes.small_repeats
    for rep in range(repeats):
        order = list(zip(targets, servers, strict=True))
        for target, server in order if rep % 2 == 0 else reversed(order):
            if workload.name in outcome.errors[target.name]:
                continue
            if server.proc.poll() is not None:
                outcome.errors[target.name][workload.name] = f"server died:\n{server.log_tail()}"
                continue
            before = len(target.meter.samples)
            try:
                await workload.run(target, sizes, rep)
            except Exception as exc:  # one server failing a workload must not stop the comparison
                outcome.errors[target.name][workload.name] = _describe(exc)
                print(f"[{target.name}] {workload.name} #{rep + 1}: FAILED {_describe(exc)}", flush=True)
                continue
            for sample in target.meter.samples[before:]:
                _print_progress(target.name, rep, sample)


def _print_progress(name: str, rep: int, sample: Sample) -> None:
    """One line per timed span, so a long run shows where it is."""
    figure = report.FIGURES[sample.figure]
    rate = sample.units / sample.seconds / (1e6 if figure.bulk else 1.0)
    moto = "" if sample.storage_cpu is None else f"  moto cpu {sample.storage_cpu:5.2f}s"
    print(f"[{name:8}] {sample.figure:22} #{rep + 1}: {rate:9.1f} {figure.unit:7} "
          f"{sample.seconds:6.2f}s  server cpu {sample.server_cpu:5.2f}s  client cpu {sample.client_cpu:5.2f}s"
          f"{moto}", flush=True)


def _describe(exc: BaseException) -> str:
    """The first leaf error of a (possibly grouped) exception, which is the one that matters."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _print_problems(outcome: Outcome) -> None:
    """List failed workloads and header anomalies per server, after the table."""
    for name in outcome.samples:
        for workload, error in outcome.errors[name].items():
            print(f"\n[{name}] {workload} FAILED: {error}")
        for note in outcome.notes[name]:
            print(f"[{name}] wire: {note}")


def _document(args: argparse.Namespace, sizes: Sizes, storage: StorageBackend, start: tuple[float, float],
              table: dict[str, dict[str, report.Measured]], outcome: Outcome) -> dict[str, Any]:
    """Everything needed to compare one run with another later, and to judge how quiet the host was."""
    started, busy = start
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started,
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "cpus": _cpu_count(), "busy_before": busy},
        "storage": storage.name,
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "figures": report.as_json(table),
        "errors": outcome.errors,
        "wire_notes": outcome.notes,
    }


def _host_busy(window: float = 0.5) -> float:
    """Fraction of all CPU time spent busy over `window` seconds (from /proc/stat), before any
    server starts: on a 2-core machine a concurrent test run skews every figure."""
    idle0, total0 = _cpu_ticks()
    time.sleep(window)
    idle1, total1 = _cpu_ticks()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def _cpu_ticks() -> tuple[int, int]:
    """Idle (idle + iowait) and total ticks of all CPUs since boot, from the first line of /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return ticks[3] + ticks[4], sum(ticks)


def _cpu_count() -> int:
    """CPUs this process may run on: the figure that explains client/server contention."""
    return len(os.sched_getaffinity(0))


def _stop_all(servers: list[Server], storage: StorageBackend) -> None:
    """Stop every started server, then the storage; safe to call twice (try/finally and atexit both do)."""
    for server in servers:
        server.stop()
    storage.stop()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so the finally block and atexit stop the servers."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
