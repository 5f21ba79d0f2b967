"""GC every 2 s under ten churning pushers, as clients really push: HEAD each blob, upload only
the missing ones, then PUT the manifest, while other images are untagged for GC to collect.
Not one push may fail: a blob a HEAD said exists must still be there for the manifest."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest_of, push_blob
from tests.servers import OcistoreServer

PUSHERS = 10
SECONDS = 15.0
SHARED_LAYERS = 6


def push_like_a_client(client: httpx.Client, repo: str, blobs: list[bytes], tag: str) -> httpx.Response:
    for blob in blobs:
        if client.head(f"/v2/{repo}/blobs/{digest_of(blob)}").status_code != 200:
            push_blob(client, repo, blob)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, blobs[0]),
                           "layers": [descriptor(OCI_LAYER, b) for b in blobs[1:]]}).encode()
    return client.put(f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})


def test_no_push_fails_while_gc_runs_every_two_seconds(tmp_path: Path) -> None:
    server = OcistoreServer(tmp_path, storage={"gcDelay": "1s", "gcInterval": "2s"}).start()
    shared = [os.urandom(4096) for _ in range(SHARED_LAYERS)]
    failures: list[str] = []
    pushed = 0
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def pusher(n: int) -> None:
        nonlocal pushed
        repo = f"churn/r{n % 3}"  # several pushers per repository
        with httpx.Client(base_url=server.url, timeout=60) as client:
            i = 0
            while time.monotonic() < deadline:
                config = json.dumps({"pusher": n, "i": i}).encode()
                blobs = [config, shared[i % SHARED_LAYERS], shared[(i + n) % SHARED_LAYERS], os.urandom(2048)]
                tag = f"p{n}-{i}"
                resp = push_like_a_client(client, repo, blobs, tag)
                with lock:
                    if resp.status_code == 201:
                        pushed += 1
                    else:
                        failures.append(f"{repo}:{tag} {resp.status_code} {resp.text[:200]}")
                if resp.status_code == 201 and i % 2:
                    # Untag the previous one: its own blobs become GC's to collect.
                    client.delete(f"/v2/{repo}/manifests/p{n}-{i - 1}")
                i += 1

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(PUSHERS) as pool:
            list(pool.map(pusher, range(PUSHERS)))
        elapsed = time.monotonic() - started
        assert "gc" in server.log()
    finally:
        server.stop()
    print(f"{pushed} pushes in {elapsed:.1f}s ({pushed / elapsed:.1f}/s) with GC every 2s; {len(failures)} failed")
    assert not failures, failures[:5]
    assert pushed > PUSHERS
