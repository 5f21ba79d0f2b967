"""Stored documents that do not parse are findings: GC and scrub go on past them.

A manifest of 1000 nested arrays used to raise RecursionError from every pass that read it,
so `ocistore gc`, `ocistore scrub` and the periodic sweep stopped at the first repository
holding it, and the repositories after it were never collected.  Here such a document sits
in the first of several repositories (listed as a child of a tagged index, so GC must read
it), a corrupt index.json in the second, and the last must still be collected and scrubbed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ocistore.blobstore.paths import blob_path
from ocistore.config import StorageConfig
from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.gc import collect_store
from ocistore.locks import LocalLocks
from ocistore.registry.manifests import put_manifest
from ocistore.registry.store import Store
from ocistore.registry.uploads import monolithic
from ocistore.scrub import scrub_store
from ocistore.scrub_report import load_report
from ocistore.storage.local import LocalDriver
from tests.api.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    digest_of,
    push_blob,
    push_manifest,
    push_random_image,
)
from tests.servers import BIN, OcistoreServer

DEEP = b"[" * 1000 + b"]" * 1000
FIRST, CORRUPT, LAST = "bad/a-first", "bad/m-corrupt", "bad/z-last"


def blob_file(root: Path, repo: str, digest: str) -> Path:
    algorithm, encoded = digest.split(":", 1)
    return root / repo / "blobs" / algorithm / encoded


def files_of(image: Image) -> list[str]:
    return [image.digest, digest_of(image.config), *(digest_of(layer) for layer in image.layers)]


def fill(client: httpx.Client, root: Path) -> dict[str, Image]:
    """Three repositories, each with a kept image and an untagged one GC would collect."""
    images: dict[str, Image] = {}
    for repo in (FIRST, CORRUPT, LAST):
        images[f"{repo}:keep"] = push_random_image(client, repo, "keep")
        images[f"{repo}:orphan"] = push_random_image(client, repo)  # by digest: untagged
    deep = push_blob(client, FIRST, DEEP)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": deep, "size": len(DEEP)}]}).encode()
    push_manifest(client, FIRST, "poison", index, OCI_INDEX)
    (root / CORRUPT / "index.json").write_bytes(DEEP)
    return images


def age_everything(root: Path, seconds: float) -> None:
    """Make every file older than gcDelay, instead of waiting that long."""
    past = time.time() - seconds
    for path in root.rglob("*"):
        os.utime(path, (past, past))


def run_cli(server: OcistoreServer, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "ocistore"), *args, str(server.config_path)],
                          capture_output=True, text=True, timeout=120, cwd=server.workdir)
    assert proc.returncode == status, f"ocistore {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_collected_past_the_bad_ones(root: Path, images: dict[str, Image]) -> None:
    # The repository whose kept index lists an unreadable child: nothing of it is collected.
    for d in files_of(images[f"{FIRST}:orphan"]) + files_of(images[f"{FIRST}:keep"]) + [digest_of(DEEP)]:
        assert blob_file(root, FIRST, d).exists(), f"GC deleted {d} although a kept document did not parse"
    # A corrupt index.json: nothing known to be unreferenced, nothing goes.
    for d in files_of(images[f"{CORRUPT}:orphan"]):
        assert blob_file(root, CORRUPT, d).exists()
    # The repository after them was still collected.
    for d in files_of(images[f"{LAST}:orphan"]):
        assert not blob_file(root, LAST, d).exists(), f"{LAST} was not collected"
    for d in files_of(images[f"{LAST}:keep"]):
        assert blob_file(root, LAST, d).exists()


def test_cli_gc_and_scrub_go_on_past_unparseable_documents(tmp_path: Path) -> None:
    server = OcistoreServer(tmp_path, storage={"gc": True, "gcDelay": "1h"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            images = fill(client, server.root)
            deep_index = client.get(f"/v2/{FIRST}/manifests/poison")
            assert deep_index.status_code == 200
    finally:
        server.stop()
    age_everything(server.root, 7200)
    # Damage a layer of the last repository: only a scrub that reaches it can find that.
    damaged = digest_of(images[f"{LAST}:keep"].layers[0])
    blob_file(server.root, LAST, damaged).write_bytes(b"rot")

    # Both are findings (exit status 1), and neither stops the pass.
    gc = run_cli(server, "gc", status=1)
    assert f"manifest {digest_of(DEEP)} does not parse" in gc.stdout, gc.stdout
    assert f"{CORRUPT}: not collected" in gc.stdout, gc.stdout
    assert_collected_past_the_bad_ones(server.root, images)

    run_cli(server, "scrub", status=1)
    store = Store(LocalDriver(str(server.root)), StorageConfig(root_directory=str(server.root)), LocalLocks())
    findings = set(asyncio.run(load_report(store)).findings)
    assert (FIRST, digest_of(DEEP), "unreadable_manifest") in findings, findings
    assert (CORRUPT, "", "corrupt_index") in findings, findings
    assert (LAST, damaged, "size_mismatch") in findings, findings


def test_periodic_sweep_and_scrub_pass_go_on_past_unparseable_documents(tmp_path: Path) -> None:
    """The workers' code path: `collect_store` and `scrub_store` over every repository."""
    server = OcistoreServer(tmp_path, storage={"gc": False}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            images = fill(client, server.root)
    finally:
        server.stop()
    root = server.root
    store = Store(LocalDriver(str(root)), StorageConfig(root_directory=str(root), gc_delay=0.0), LocalLocks())

    async def sweep() -> list[tuple[str, list[str], str | None]]:
        return [(r.repo, r.unreadable, r.error) async for r in collect_store(store)]

    reports = {repo: (unreadable, error) for repo, unreadable, error in asyncio.run(sweep())}
    assert reports[FIRST] == ([digest_of(DEEP)], None)
    assert reports[CORRUPT][1] is not None and "index.json" in reports[CORRUPT][1]
    assert reports[LAST] == ([], None)
    assert_collected_past_the_bad_ones(root, images)

    report = asyncio.run(scrub_store(store))
    assert report.passes == 1
    assert (FIRST, digest_of(DEEP), "unreadable_manifest") in report.findings
    assert (CORRUPT, "", "corrupt_index") in report.findings
    assert not [k for k in report.findings if k[0] == LAST]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_manifest_references_count_as_missing_when_a_directory_or_damaged(tmp_path: Path) -> None:
    """The reference check reads through the blob store's `stat`: a directory at a blob's path, or a copy
    scrub marked damaged, is not the blob, so the manifest is MANIFEST_BLOB_UNKNOWN and the
    client pushes the blob again (which repairs it) instead of referencing what is not there."""
    root = tmp_path / "store"
    store = Store(LocalDriver(str(root)), StorageConfig(root_directory=str(root)), LocalLocks())
    repo, config, layer = "refs/app", b'{"os":"linux"}', b"layer bytes"

    async def scenario() -> tuple[RegistryError, RegistryError]:
        await monolithic(store, repo, Digest.parse(digest_of(config)), _once(config))
        (root / repo / "blobs" / "sha256" / digest_of(layer).split(":")[1]).mkdir(parents=True)
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
               "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": len(layer)}]}
        with pytest.raises(RegistryError) as as_directory:
            await put_manifest(store, repo, "v1", json.dumps(doc).encode(), OCI_MANIFEST)
        (root / repo / "blobs" / "sha256" / digest_of(layer).split(":")[1]).rmdir()
        await monolithic(store, repo, Digest.parse(digest_of(layer)), _once(layer))
        path = blob_path(repo, Digest.parse(digest_of(layer)))
        info = await store.driver.stat(path)
        await store.damage.record(digest_of(layer), info.ident, path, "planted by the test")
        with pytest.raises(RegistryError) as as_damaged:
            await put_manifest(store, repo, "v1", json.dumps(doc).encode(), OCI_MANIFEST)
        return as_directory.value, as_damaged.value

    for refused in asyncio.run(scenario()):
        assert refused.code is ErrorCode.MANIFEST_BLOB_UNKNOWN
        assert refused.detail == {"digests": [digest_of(layer)]}
    assert asyncio.run(store.index.read(repo)) is None  # nothing was listed
