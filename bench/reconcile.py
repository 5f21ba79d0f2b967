"""How long the dedupe reconcile takes over a store of 10,000 blobs.

Builds a store directly on disk: N repositories, each a plain OCI layout holding its own
copies of blobs of which half are shared with another repository (so reconcile has real
links to make), then times `ocistore dedupe --reconcile` with dedupe on and with it off,
and reports physical/logical bytes after each.

    .venv/bin/python bench/reconcile.py [--blobs 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BLOB_SIZE = 4096
PER_REPO = 100


def build_store(root: Path, blobs: int) -> None:
    """`blobs` files over blobs/PER_REPO repositories; repositories pair up and share half their blobs."""
    repos = blobs // PER_REPO
    for r in range(repos):
        layout = root / f"bench/repo{r:04d}"
        (layout / "blobs/sha256").mkdir(parents=True)
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))
        for i in range(PER_REPO):
            # Odd blobs are this repository's own; even ones are the same in both repos of a pair.
            owner = r - r % 2 if i % 2 == 0 else r
            data = f"{owner}:{i}".encode().ljust(BLOB_SIZE, b".")
            (layout / "blobs/sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)


def du(config: Path) -> dict[str, float]:
    out = subprocess.run([str(BIN / "ocistore"), "du", str(config), "--json"], capture_output=True, text=True,
                         check=True)
    total = json.loads(out.stdout)["/"]
    return {k: total[k] for k in ("blobs", "logical_bytes", "physical_bytes", "physical_to_logical")}


def reconcile(config: Path) -> float:
    started = time.monotonic()
    subprocess.run([str(BIN / "ocistore"), "dedupe", str(config), "--reconcile"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blobs", type=int, default=10_000, help="blob files in the store (default 10,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocistore-reconcile-") as tmp:
        root = Path(tmp) / "data"
        build_store(root, args.blobs)
        results: dict[str, object] = {"before": None}
        for dedupe in (True, False):
            config = Path(tmp) / f"config-{dedupe}.json"
            config.write_text(json.dumps({"storage": {"rootDirectory": str(root), "dedupe": dedupe}}))
            if dedupe:
                results["before"] = du(config)
            seconds = reconcile(config)
            results[f"dedupe {'on' if dedupe else 'off'}"] = {"seconds": round(seconds, 2), **du(config)}
        for name, figures in results.items():
            print(f"{name:>12}: {figures}")
        out = Path(__file__).parent / "results" / "reconcile.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        os.sync()


if __name__ == "__main__":
    main()
