"""GC against pushes, deterministically, in process: GC never deletes a blob a client was
told exists (a HEAD, mount or re-push since GC looked renews it, and GC re-checks under the
digest's lock), GC's sweep never shares an index write with a PUT, and what a killed
writer left behind is reported and collected, never what a live one is writing."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from ocistore.blobstore.paths import blob_path
from ocistore.config import StorageConfig
from ocistore.digests import Digest, digest_of
from ocistore.errors import ErrorCode, RegistryError
from ocistore.gc import collect_repository
from ocistore.locks import LocalLocks
from ocistore.mediatypes import OCI_MANIFEST
from ocistore.registry.index import Draft
from ocistore.registry.store import Store
from ocistore.registry.tags import put_tags
from ocistore.scrub import scrub_repository
from ocistore.scrub_report import ScrubReport
from ocistore.storage.local import LocalDriver
from tests.test_scrub import blob_file, push_blob, push_manifest, run

REPO = "gc/race"
GC_DELAY = 60.0


def make_store(root: Path, dedupe_on: bool) -> Store:
    from ocistore.cache import open_cache

    config = StorageConfig(root_directory=str(root), gc_delay=GC_DELAY, dedupe=dedupe_on)
    cache = open_cache(None, str(root), "") if dedupe_on else None
    return Store(LocalDriver(str(root)), config, LocalLocks(), "", cache)


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.mark.parametrize("dedupe_on", [True, False], ids=["dedupe", "no-dedupe"])
def test_a_blob_renewed_after_gc_looked_is_kept(tmp_path: Path, dedupe_on: bool) -> None:
    store = make_store(tmp_path, dedupe_on)
    layer = run(push_blob(store, REPO, os.urandom(1000)))
    path = blob_file(tmp_path, REPO, layer["digest"])
    age(path, 2 * GC_DELAY)
    cutoff = time.time() - GC_DELAY

    async def scenario() -> None:
        # GC decided the orphan goes; a HEAD renews it before GC deletes it.
        await store.blobs.stat(REPO, Digest.parse(layer["digest"]))
        held = await store.driver.stat(blob_path(REPO, Digest.parse(layer["digest"])))
        assert not await store.blobs.collect(held, cutoff)
    run(scenario())
    assert path.exists()


@pytest.mark.parametrize("dedupe_on", [True, False], ids=["dedupe", "no-dedupe"])
def test_a_head_keeps_an_orphan_from_the_next_gc(tmp_path: Path, dedupe_on: bool) -> None:
    store = make_store(tmp_path, dedupe_on)
    layer = run(push_blob(store, REPO, os.urandom(1000)))
    path = blob_file(tmp_path, REPO, layer["digest"])
    age(path, 2 * GC_DELAY)
    run(store.blobs.stat(REPO, Digest.parse(layer["digest"])))
    report = run(collect_repository(store, REPO))
    assert layer["digest"] not in report.blobs and path.exists()
    age(path, 2 * GC_DELAY)
    assert layer["digest"] in run(collect_repository(store, REPO)).blobs and not path.exists()


@pytest.mark.parametrize("gc_first", [True, False], ids=["gc-queued-first", "put-queued-first"])
def test_gc_and_a_put_arriving_together_never_share_a_write(tmp_path: Path, gc_first: bool) -> None:
    """Queued in one turn of the loop, they would once share a batch: GC's sweep decided the
    layer unreferenced, the PUT then referenced it, and GC's deletion took it from under an
    acknowledged manifest."""
    store = make_store(tmp_path, True)
    config = run(push_blob(store, REPO, json.dumps({"c": 1}).encode()))
    layer = run(push_blob(store, REPO, os.urandom(1000)))
    for d in (config, layer):
        age(blob_file(tmp_path, REPO, d["digest"]), 2 * GC_DELAY)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                       "layers": [layer]}).encode()
    digest = digest_of(body)
    desc = {"mediaType": OCI_MANIFEST, "digest": str(digest), "size": len(body)}

    async def store_and_tag(draft: Draft) -> None:
        """What a manifest PUT does under the index lock: refuse unless its blobs are there."""
        for d in (config, layer):
            if not await store.driver.exists(blob_path(REPO, Digest.parse(d["digest"]))):
                raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, {"digests": [d["digest"]]})
        await put_tags(desc, ["v1"])(draft)

    async def scenario() -> bool:
        await store.driver.put_content(blob_path(REPO, digest), body)
        # Both queued before the index store's writer takes its first turn.
        gc = asyncio.ensure_future(collect_repository(store, REPO))
        put = asyncio.ensure_future(store.index.update(REPO, store_and_tag))
        await asyncio.gather(*((gc, put) if gc_first else (put, gc)), return_exceptions=True)
        return put.exception() is None
    if run(scenario()):
        for d in (config, layer):
            assert blob_file(tmp_path, REPO, d["digest"]).exists(), "an acknowledged manifest lost a blob"


def test_temporaries_a_killed_writer_left_are_reported_by_scrub_and_collected_by_gc(tmp_path: Path) -> None:
    store = make_store(tmp_path, True)
    layer = run(push_blob(store, REPO, os.urandom(100)))
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": layer, "layers": []}).encode()
    run(push_manifest(store, REPO, "v1", json.loads(body)))
    repo_dir = tmp_path / REPO
    old = [repo_dir / "index.json.tmp-0123abcd", repo_dir / "blobs" / "sha256" / f"{'b' * 64}.tmp-4567"]
    fresh = repo_dir / "index.json.tmp-89ef"  # a write in progress: never touched
    for f in (*old, fresh):
        f.write_bytes(b"partial")
    for f in old:
        age(f, 2 * GC_DELAY)

    report = ScrubReport()
    run(scrub_repository(store, REPO, report))
    stray = {k[1] for k in report.findings if k[2] == "stray_temporary_file"}
    assert stray == {"index.json.tmp-0123abcd", f"blobs/sha256/{'b' * 64}.tmp-4567"}

    collected = run(collect_repository(store, REPO))
    assert sorted(collected.temporaries) == sorted(stray)
    assert not any(f.exists() for f in old) and fresh.exists()
    assert blob_file(tmp_path, REPO, layer["digest"]).exists()
