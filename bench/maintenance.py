"""Maintenance figures for issue 3: how soon GC collects a deleted manifest, and how fast scrub hashes.

1. Delete to collection: `ocistore topology CONFIG --replicas 2` with gcDelay 2s; N images (a config and
   two 1 MiB layers each, one repository each) pushed through the load balancer, then one at a time:
   DELETE the manifest by digest through the load balancer and poll the disk every 50 ms until the
   image's blobs (config and layers) are gone. Reported: min/median/max seconds from the DELETE's
   answer to their disappearance, and the same minus gcDelay (the scheduling overhead).
2. Scrub throughput on a 1 GiB store (64 blobs of 16 MiB, pushed through `ocistore serve`):
   (a) `ocistore scrub CONFIG` in the foreground, unpaced: wall time and MB/s;
   (b) the scrub-worker of `ocistore topology` (paced at its default 200 MB/s): one pass at start,
       its `last_pass_seconds` from the report;
   (c) `openssl speed -evp sha256 -bytes 16384 -seconds 3`, the machine's raw sha256 speed, which
       (a) and (b) are given as fractions of.
   The store fits the page cache, so both passes read from memory: they measure hashing and the
   scrub's own overhead, not the disk.

MB is 10^6 bytes throughout (as in openssl's figures and the scrub-worker's --rate).

    .venv/bin/python bench/maintenance.py [--images 5] [--output bench/results/maintenance.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

# Run as a script from the repository root: the test helpers live in the `tests` package there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, delete_manifest, descriptor, push_blob, push_manifest
from tests.servers import BIN, OcistoreServer, OcistoreTopology, all_gone, blob_file, free_port, wait_until

RESULTS = Path(__file__).resolve().parent / "results" / "maintenance.json"
MIB = 1 << 20
MB = 1e6

GC_DELAY = 2.0
GC_POLL = 0.05
GC_TIMEOUT = GC_DELAY + 15.0  # Dramatiq's delayed messages start up to ~1s late; far more is a failure
LAYER_BYTES = MIB

SCRUB_BLOBS = 64
SCRUB_BLOB_BYTES = 16 * MIB
SCRUB_LAYERS_PER_IMAGE = 8
SCRUB_WORKER_RATE_MB_S = 200.0  # the scrub-worker's default --rate; `ocistore topology` passes none
SCRUB_PASS_TIMEOUT = 90.0
FOREGROUND_TIMEOUT = 120.0
OPENSSL_ARGS = ["speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3"]
START_TIMEOUT = 60.0


def _storage(gc_delay: str) -> dict[str, Any]:
    return {"gc": True, "gcDelay": gc_delay, "gcInterval": "1h"}


def _extensions(scrub: bool, scrub_interval: str) -> dict[str, Any]:
    return {"scrub": {"enable": scrub, "interval": scrub_interval}}


def _config(root: Path, port: int, *, gc_delay: str, scrub: bool, scrub_interval: str = "1h") -> dict[str, Any]:
    return {
        "distSpecVersion": "1.1.0",
        "storage": {"rootDirectory": str(root), **_storage(gc_delay)},
        "http": {"address": "127.0.0.1", "port": str(port)},
        "log": {"level": "info"},
        "extensions": _extensions(scrub, scrub_interval),
    }


@contextmanager
def topology(workdir: Path, *, gc_delay: str, scrub: bool, scrub_interval: str = "1h",
             root: Path | None = None) -> Iterator[OcistoreTopology]:
    """`ocistore topology CONFIG --replicas 2` (its own redis-server) in `workdir`, its store in `root`
    (default workdir/data); stopped, and its logs printed if it failed."""
    workdir.mkdir()
    storage = _storage(gc_delay) | ({"rootDirectory": str(root)} if root is not None else {})
    topo = OcistoreTopology(workdir, None, storage=storage,
                            extra={"extensions": _extensions(scrub, scrub_interval)}, replicas=2)
    topo.root = root or topo.root  # the store its config names
    ok = False
    try:
        topo.start(timeout=START_TIMEOUT)
        yield topo
        ok = True
    finally:
        topo.stop()
        if not ok:
            print(topo.log(), file=sys.stderr)


def push_image(client: httpx.Client, repo: str, tag: str, layers: list[bytes], nonce: str) -> tuple[str, list[str]]:
    """Push a config and `layers`, then the manifest by `tag`; returns (manifest digest, blob digests)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": nonce}).encode()
    digests = [push_blob(client, repo, blob) for blob in (config, *layers)]
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }).encode()
    resp = push_manifest(client, repo, tag, body)
    return str(resp.headers["Docker-Content-Digest"]), digests


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def measure_gc(workdir: Path, images: int) -> dict[str, Any]:
    """Seconds from each DELETE's answer until the gc-worker has removed the image's blobs from disk."""
    samples: list[float] = []
    with (topology(workdir / "gc", gc_delay=f"{GC_DELAY:g}s", scrub=False) as topo,
          httpx.Client(base_url=topo.url, timeout=60.0) as client):
        root = topo.root
        pushed = []
        for i in range(images):
            repo = f"bench/gc-{i}"
            layers = [os.urandom(LAYER_BYTES) for _ in range(2)]
            pushed.append((repo, *push_image(client, repo, "v1", layers, os.urandom(8).hex())))
        for repo, manifest, blobs in pushed:
            delete_manifest(client, repo, manifest)
            deleted_at = time.time()
            gone_at = wait_until(all_gone(root, repo, blobs), GC_TIMEOUT, GC_POLL)
            if gone_at is None:
                left = [d for d in blobs if blob_file(root, repo, d).exists()]
                raise RuntimeError(f"{repo}: {len(left)} blobs still on disk {GC_TIMEOUT}s after the delete")
            samples.append(gone_at - deleted_at)
            print(f"  {repo}: collected {samples[-1]:.3f}s after the DELETE", flush=True)
    latency = summary(samples)
    return {
        "gc_delay_s": GC_DELAY, "images": images, "poll_s": GC_POLL, "latency_s": latency,
        "overhead_s": {k: v - GC_DELAY for k, v in latency.items()}, "samples_s": samples,
    }


def scrub_blob(pattern: bytes, n: int) -> bytes:
    """16 MiB that no other blob of the store shares: a header naming `n`, then the repeating pattern."""
    header = f"ocistore scrub bench blob {n:08d}\n".encode()
    body = pattern * (SCRUB_BLOB_BYTES // len(pattern) + 1)
    return header + body[:SCRUB_BLOB_BYTES - len(header)]


def build_scrub_store(workdir: Path) -> tuple[Path, int]:
    """Push 64 x 16 MiB (8 images of 8 layers) through `ocistore serve`; returns (root, blob bytes on disk)."""
    (workdir / "scrub").mkdir()
    server = OcistoreServer(workdir / "scrub", storage={"gc": False})
    server.start()
    pattern = os.urandom(MIB)
    try:
        with httpx.Client(base_url=server.url, timeout=120.0) as client:
            for i in range(SCRUB_BLOBS // SCRUB_LAYERS_PER_IMAGE):
                first = i * SCRUB_LAYERS_PER_IMAGE
                layers = [scrub_blob(pattern, first + k) for k in range(SCRUB_LAYERS_PER_IMAGE)]
                push_image(client, f"bench/scrub-{i}", "v1", layers, f"scrub-{i}")
    finally:
        server.stop()
    on_disk = sum(p.stat().st_size for p in server.root.glob("*/*/blobs/*/*") if p.is_file())
    return server.root, on_disk


def read_report(root: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((root / ".ocistore" / "scrub-report.json").read_text())
        return doc
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def measure_foreground_scrub(workdir: Path, root: Path) -> dict[str, Any]:
    """`ocistore scrub CONFIG`: one unpaced pass in the foreground, timed from outside and by the report."""
    config_path = workdir / "scrub-config.json"
    config_path.write_text(json.dumps(_config(root, free_port(), gc_delay="1h", scrub=False)))
    before = read_report(root)
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ocistore"), "scrub", str(config_path)], capture_output=True, text=True,
                          timeout=FOREGROUND_TIMEOUT, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"ocistore scrub failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    after = read_report(root)
    hashed = int(after["bytes_hashed"]) - int(before.get("bytes_hashed", 0))
    pass_s = float(after["last_pass_seconds"])
    return {
        "command": f"ocistore scrub {config_path.name}", "output": done.stdout.strip(),
        "bytes_hashed": hashed, "wall_s": wall, "wall_mb_s": hashed / MB / wall,
        "pass_s": pass_s, "pass_mb_s": hashed / MB / pass_s, "findings": len(after.get("findings", [])),
    }


def measure_worker_scrub(workdir: Path, root: Path) -> dict[str, Any]:
    """The scrub-worker's first pass (at start; interval 1h so there is no second), from its report."""
    before = read_report(root)
    passes_before = int(before.get("passes", 0))
    with topology(workdir / "scrub-worker", gc_delay="1h", scrub=True, scrub_interval="1h", root=root):
        deadline = time.monotonic() + SCRUB_PASS_TIMEOUT
        after = read_report(root)
        while int(after.get("passes", 0)) < passes_before + 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no scrub-worker pass finished within {SCRUB_PASS_TIMEOUT}s")
            time.sleep(0.2)
            after = read_report(root)
    hashed = int(after["bytes_hashed"]) - int(before.get("bytes_hashed", 0))
    pass_s = float(after["last_pass_seconds"])
    return {
        "rate_limit_mb_s": SCRUB_WORKER_RATE_MB_S, "bytes_hashed": hashed, "pass_s": pass_s,
        "pass_mb_s": hashed / MB / pass_s, "findings": len(after.get("findings", [])),
    }


def openssl_sha256() -> dict[str, Any]:
    """`openssl speed -evp sha256 -bytes 16384 -seconds 3`: raw sha256 MB/s on one core."""
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("openssl is not installed")
    done = subprocess.run([binary, *OPENSSL_ARGS], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl speed failed ({done.returncode}): {done.stderr}")
    # The table's last line: "sha256   2036187.14k" (1000s of bytes per second, for 16384-byte blocks).
    rows = [m for line in done.stdout.splitlines() if (m := re.match(r"^(sha256|SHA256)\s+([\d.]+)k\s*$", line))]
    if not rows:
        raise RuntimeError(f"no sha256 row in openssl's output:\n{done.stdout}")
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"command": f"openssl {' '.join(OPENSSL_ARGS)}", "version": version,
            "mb_s": float(rows[-1].group(2)) * 1000 / MB}


def print_report(result: dict[str, Any]) -> None:
    gc, fg, worker, sha = result["gc"], result["scrub_foreground"], result["scrub_worker"], result["openssl_sha256"]
    lat, over = gc["latency_s"], gc["overhead_s"]
    print()
    print(f"delete -> collection, gcDelay {gc['gc_delay_s']:g}s, {gc['images']} images, polled every "
          f"{gc['poll_s'] * 1000:.0f} ms:")
    print(f"  latency   min {lat['min']:.3f}s  median {lat['median']:.3f}s  max {lat['max']:.3f}s")
    print(f"  overhead  min {over['min']:.3f}s  median {over['median']:.3f}s  max {over['max']:.3f}s"
          "  (latency - gcDelay)")
    print(f"scrub of a {result['store_bytes'] / 2**30:.2f} GiB store ({SCRUB_BLOBS} blobs of "
          f"{SCRUB_BLOB_BYTES // MIB} MiB, warm page cache):")
    print(f"  foreground `ocistore scrub`: {fg['wall_s']:.2f}s wall = {fg['wall_mb_s']:.0f} MB/s "
          f"({fg['wall_mb_s'] / sha['mb_s']:.0%} of sha256); pass {fg['pass_s']:.2f}s = {fg['pass_mb_s']:.0f} MB/s "
          f"({fg['pass_mb_s'] / sha['mb_s']:.0%})")
    print(f"  scrub-worker (--rate {worker['rate_limit_mb_s']:g}): pass {worker['pass_s']:.2f}s = "
          f"{worker['pass_mb_s']:.0f} MB/s ({worker['pass_mb_s'] / sha['mb_s']:.0%} of sha256)")
    print(f"  openssl sha256 ({sha['command']}): {sha['mb_s']:.0f} MB/s")
    print(f"load average before/after: {result['loadavg_before']} / {result['loadavg_after']}; "
          f"total {result['total_s']:.0f}s")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally`s that stop the processes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5, help="images deleted one by one (default 5)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="ocistore-maintenance-") as tmp:
        workdir = Path(tmp)
        print(f"delete -> collection ({args.images} images, gcDelay {GC_DELAY:g}s) ...", flush=True)
        result["gc"] = measure_gc(workdir, args.images)
        print("building a 1 GiB store through `ocistore serve` ...", flush=True)
        t = time.monotonic()
        root, result["store_bytes"] = build_scrub_store(workdir)
        result["store_push_s"] = time.monotonic() - t
        print(f"  {result['store_bytes'] / MB:.0f} MB pushed in {result['store_push_s']:.1f}s", flush=True)
        print("foreground scrub ...", flush=True)
        result["scrub_foreground"] = measure_foreground_scrub(workdir, root)
        print("scrub-worker pass ...", flush=True)
        result["scrub_worker"] = measure_worker_scrub(workdir, root)
    print("openssl speed ...", flush=True)
    result["openssl_sha256"] = sha = openssl_sha256()
    for key in ("scrub_foreground", "scrub_worker"):
        for figure in ("pass_mb_s", "wall_mb_s"):
            if figure in result[key]:
                result[key][figure.replace("mb_s", "fraction_of_sha256")] = result[key][figure] / sha["mb_s"]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["total_s"] = time.monotonic() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
