"""Dedupe as a user sees it: shared layers kept once, deletes that never lose bytes another
image needs, concurrent pushes of one layer, and dedupe switched off and on under load."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest_of, push_blob, push_manifest
from tests.servers import BIN, OcistoreServer

LAYER = 64 << 10


def make_image(shared: list[bytes], i: int) -> tuple[bytes, list[bytes], bytes]:
    """Image `i`: the 8 shared layers plus 2 of its own, and a config of its own."""
    own = [os.urandom(LAYER) for _ in range(2)]
    layers = [*shared, *own]
    config = json.dumps({"architecture": "amd64", "os": "linux", "image": i}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, b) for b in layers],
    }).encode()
    return config, layers, manifest


def push_image(client: httpx.Client, repo: str, config: bytes, layers: list[bytes], manifest: bytes) -> None:
    for blob in (config, *layers):
        push_blob(client, repo, blob)
    push_manifest(client, repo, "v1", manifest)


def pull_verified(client: httpx.Client, repo: str) -> None:
    """Pull the image tagged v1 and check every blob against its digest."""
    resp = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    for desc in (doc["config"], *doc["layers"]):
        blob = client.get(f"/v2/{repo}/blobs/{desc['digest']}")
        assert blob.status_code == 200, (repo, desc["digest"])
        assert digest_of(blob.content) == desc["digest"]


def physical_bytes(root: Path) -> int:
    """Bytes on disk under the blobs of every repository, each inode counted once."""
    seen: set[int] = set()
    total = 0
    for p in root.rglob("blobs/sha256/*"):
        st = p.stat()
        if st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total


def ocistore(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(BIN / "ocistore"), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def server(workdir: Path, cache_storage: dict[str, Any]) -> Iterator[OcistoreServer]:
    srv = OcistoreServer(workdir, storage={**cache_storage, "gcDelay": "1s"}).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_twenty_images_sharing_eight_layers_are_stored_once_and_survive_deletes(
    server: OcistoreServer, workdir: Path
) -> None:
    shared = [os.urandom(LAYER) for _ in range(8)]
    images = [make_image(shared, i) for i in range(20)]
    unique: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i, (config, layers, manifest) in enumerate(images):
            push_image(client, f"dd/app{i}", config, layers, manifest)
            for blob in (config, *layers, manifest):
                unique[digest_of(blob)] = len(blob)
        on_disk = physical_bytes(server.root)
        assert abs(on_disk - sum(unique.values())) <= 0.01 * sum(unique.values())
        du = json.loads(ocistore("du", str(server.config_path), "--json").stdout)["stores"]["/"]
        assert du["logical_bytes"] > 2 * du["physical_bytes"]
        assert abs(du["physical_bytes"] - sum(unique.values())) <= 0.01 * sum(unique.values())

        for i in range(19):
            digest = digest_of(images[i][2])
            assert client.delete(f"/v2/dd/app{i}/manifests/{digest}").status_code == 202
        server.stop()
        time.sleep(1.2)
        ocistore("gc", str(server.config_path))
    last = OcistoreServer(workdir, storage=json.loads(server.config_path.read_text())["storage"]).start()
    try:
        with httpx.Client(base_url=last.url, timeout=60) as client:
            pull_verified(client, "dd/app19")
        config, layers, manifest = images[19]
        kept = sum(len(b) for b in (config, *layers, manifest))
        assert physical_bytes(last.root) == kept
    finally:
        last.stop()


def test_concurrent_pushes_of_one_layer_store_it_once(server: OcistoreServer) -> None:
    layer = os.urandom(512 << 10)

    def push(i: int) -> str:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return push_blob(client, f"dd/concurrent{i}", layer)

    with ThreadPoolExecutor(16) as pool:
        digests = list(pool.map(push, range(16)))
    assert set(digests) == {digest_of(layer)}
    files = list(server.root.glob(f"dd/concurrent*/blobs/sha256/{digest_of(layer)[7:]}"))
    assert len(files) == 16
    assert len({f.stat().st_ino for f in files}) == 1


def test_deleting_the_original_keeps_the_bytes_for_other_holders(server: OcistoreServer) -> None:
    layer = os.urandom(LAYER)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        digest = push_blob(client, "dd/first", layer)
        push_blob(client, "dd/second", layer)
        assert client.delete(f"/v2/dd/first/blobs/{digest}").status_code == 202
        assert client.head(f"/v2/dd/first/blobs/{digest}").status_code == 404
        assert client.get(f"/v2/dd/second/blobs/{digest}").content == layer
        # The cache promoted the second holder: a third push links to it.
        push_blob(client, "dd/third", layer)
        assert client.get(f"/v2/dd/third/blobs/{digest}").content == layer
        mounted = client.post("/v2/dd/fourth/blobs/uploads/", params={"mount": digest})
        assert mounted.status_code == 201
    inodes = {p.stat().st_ino for p in server.root.glob(f"dd/*/blobs/sha256/{digest[7:]}")}
    assert len(inodes) == 1


def test_dedupe_switched_off_then_on_under_pushes_keeps_every_image(
    workdir: Path, cache_storage: dict[str, Any]
) -> None:
    shared = [os.urandom(LAYER) for _ in range(8)]
    storage = dict(cache_storage)
    first = OcistoreServer(workdir, storage=storage).start()
    pushed: list[str] = []
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            for i in range(6):
                push_image(client, f"dd/toggle{i}", *make_image(shared, i))
                pushed.append(f"dd/toggle{i}")
    finally:
        first.stop()

    for dedupe, start in ((False, 100), (True, 200)):
        server = OcistoreServer(workdir, storage={**storage, "dedupe": dedupe}).start()
        try:
            stop = threading.Event()
            during: list[str] = []

            def keep_pushing(url: str = server.url, base: int = start, out: list[str] = during,
                             stop: threading.Event = stop) -> None:
                with httpx.Client(base_url=url, timeout=60) as client:
                    n = base
                    while not stop.is_set() and n < base + 40:
                        push_image(client, f"dd/toggle{n}", *make_image(shared, n))
                        out.append(f"dd/toggle{n}")
                        n += 1

            pusher = threading.Thread(target=keep_pushing)
            pusher.start()
            try:
                ocistore("dedupe", str(server.config_path), "--reconcile")
            finally:
                stop.set()
                pusher.join(120)
            assert during, "no push happened while the reconcile ran"
            pushed.extend(during)
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for repo in pushed:
                    pull_verified(client, repo)
        finally:
            server.stop()
        inodes_per_layer = [
            {p.stat().st_ino for p in workdir.glob(f"data/dd/*/blobs/sha256/{digest_of(layer)[7:]}")}
            for layer in shared
        ]
        if dedupe:
            assert all(len(i) == 1 for i in inodes_per_layer)
        else:
            assert all(len(i) == len(pushed) for i in inodes_per_layer)


def test_many_concurrent_pushes_of_one_blob_with_commit_never_stall(
    workdir: Path, cache_storage: dict[str, Any]
) -> None:
    """More pushes of one digest than the server has threads: the digest's lock must not starve them."""
    srv = OcistoreServer(workdir, storage={**cache_storage, "commit": True}).start()
    layer = os.urandom(200_000)
    try:
        def push(i: int) -> str:
            with httpx.Client(base_url=srv.url, timeout=30) as client:
                resp = client.post(f"/v2/dd/many{i}/blobs/uploads/", params={"digest": digest_of(layer)},
                                   content=layer)
                assert resp.status_code == 201, resp.text
                return str(resp.headers["Docker-Content-Digest"])

        with ThreadPoolExecutor(48) as pool:
            assert set(pool.map(push, range(48))) == {digest_of(layer)}
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert push_blob(client, "dd/afterwards", os.urandom(1000))
    finally:
        srv.stop()


def test_a_zot_cache_db_in_the_root_is_left_alone(workdir: Path) -> None:
    """zot keeps a BoltDB at <root>/cache.db: pushes still work and the file is untouched."""
    root = workdir / "data"
    root.mkdir()
    bolt = b"\x00\x00\x00\x00\xed\xda\x0c\xed" + os.urandom(4088)  # not SQLite
    (root / "cache.db").write_bytes(bolt)
    srv = OcistoreServer(workdir, storage={"dedupe": True}).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            layer = os.urandom(4096)
            push_blob(client, "dd/one", layer)
            push_blob(client, "dd/two", layer)
            assert client.get(f"/v2/dd/two/blobs/{digest_of(layer)}").content == layer
    finally:
        srv.stop()
    assert (root / "cache.db").read_bytes() == bolt
