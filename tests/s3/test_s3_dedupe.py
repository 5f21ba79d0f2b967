"""Dedupe on S3 as a client sees it, checked against the bucket itself.

On S3 a duplicate is a reference: a 0-byte placeholder resolved through the dedupe cache
to the one object holding the bytes.  The failures to avoid are zot's (issues 2625, 4427,
PR 4201): a holder losing its bytes when the original is deleted, and above all a
placeholder served as if it were the blob (200 with an empty or wrong body).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import assert_error, build_image, digest_of, push_blob, push_manifest
from tests.moto import MotoServer
from tests.s3.conftest import Launched, blob_objects, object_digest, repo_of, run_cli
from tests.servers import BIN, OcistoreServer, RedisServer, free_port, stop_process, wait_http

LAYER_SIZE = 300_000


def start_server(launched: Launched, workdir: Path, moto: MotoServer, bucket: str,
                 **storage: Any) -> OcistoreServer:
    server = OcistoreServer(workdir, storage={"storageDriver": moto.driver_params(bucket), **storage})
    launched.add(server)
    return server.start()


def new_repos(count: int) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    return [f"dd/{tag}-{i}" for i in range(count)]


def assert_serves(client: httpx.Client, repo: str, data: bytes) -> None:
    """GET gives exactly the blob's bytes and HEAD its true size, never a placeholder's."""
    digest = digest_of(data)
    got = client.get(f"/v2/{repo}/blobs/{digest}")
    assert got.status_code == 200, (repo, got.status_code, got.text[:300])
    assert len(got.content) == len(data), (repo, len(got.content))
    assert digest_of(got.content) == digest, repo
    head = client.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200, (repo, head.status_code)
    assert int(head.headers["Content-Length"]) == len(data), (repo, head.headers)
    assert head.headers.get("Docker-Content-Digest") == digest, (repo, head.headers)
    part = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200], (repo, part.status_code, len(part.content))


def assert_unknown(client: httpx.Client, repo: str, digest: str) -> None:
    """A 404 BLOB_UNKNOWN on GET and HEAD: never a 200 with an empty or wrong body."""
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, None)


def holders(moto: MotoServer, bucket: str, digest: str) -> tuple[list[str], list[str]]:
    """(keys holding the bytes, 0-byte placeholder keys) of a digest in the bucket."""
    objects = blob_objects(moto, bucket, digest)
    return sorted(k for k, s in objects.items() if s > 0), sorted(k for k, s in objects.items() if s == 0)


def test_shared_layer_is_held_once_and_survives_deleting_each_holder(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, cache_keys: dict[str, Any], launched: Launched) -> None:
    """Three holders, one object with bytes; deleting the original hands its bytes over, the
    last delete leaves nothing behind."""
    server = start_server(launched, tmp_path, moto_s3, bucket, **cache_keys)
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    repos = new_repos(3)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            assert push_blob(client, repo, layer) == digest
        real, refs = holders(moto_s3, bucket, digest)
        assert len(real) == 1 and len(refs) == 2, blob_objects(moto_s3, bucket, digest)
        assert {repo_of(k) for k in real + refs} == set(repos)
        assert object_digest(moto_s3, bucket, real[0]) == digest
        for repo in repos:
            assert_serves(client, repo, layer)

        # Delete the original first: one of the two others must now hold the bytes.
        original_repo = repo_of(real[0])
        assert client.delete(f"/v2/{original_repo}/blobs/{digest}").status_code == 202
        assert_unknown(client, original_repo, digest)
        left = [r for r in repos if r != original_repo]
        for repo in left:
            assert_serves(client, repo, layer)
        real, refs = holders(moto_s3, bucket, digest)
        assert len(real) == 1 and len(refs) == 1, blob_objects(moto_s3, bucket, digest)
        assert {repo_of(k) for k in real + refs} == set(left)
        assert object_digest(moto_s3, bucket, real[0]) == digest

        # Then the remaining placeholder, then the last (now original) holder.
        placeholder_repo, last_repo = repo_of(refs[0]), repo_of(real[0])
        assert client.delete(f"/v2/{placeholder_repo}/blobs/{digest}").status_code == 202
        assert_unknown(client, placeholder_repo, digest)
        assert_serves(client, last_repo, layer)
        assert client.delete(f"/v2/{last_repo}/blobs/{digest}").status_code == 202
        assert blob_objects(moto_s3, bucket, digest) == {}
        for repo in repos:
            assert_unknown(client, repo, digest)


def test_placeholder_of_a_vanished_original_is_never_served(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, cache_keys: dict[str, Any], launched: Launched) -> None:
    """The original removed behind the registry's back: its references answer 404, and the
    layer pushed again into a new repository is stored for real and served."""
    server = start_server(launched, tmp_path, moto_s3, bucket, **cache_keys)
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    repos = new_repos(4)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos[:3]:
            push_blob(client, repo, layer)
        real, refs = holders(moto_s3, bucket, digest)
        assert len(real) == 1 and len(refs) == 2, blob_objects(moto_s3, bucket, digest)
        moto_s3.client().delete_object(Bucket=bucket, Key=real[0])
        for _ in range(2):  # the first read repairs the cache; the second must not serve either
            for repo in repos[:3]:
                assert_unknown(client, repo, digest)
        # A range read of a placeholder is refused too, not answered with an empty 206.
        ranged = client.get(f"/v2/{repo_of(refs[0])}/blobs/{digest}", headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 404, (ranged.status_code, ranged.headers, ranged.content[:100])

        push_blob(client, repos[3], layer)
        assert blob_objects(moto_s3, bucket, digest)[f"{repos[3]}/blobs/sha256/{digest[7:]}"] == LAYER_SIZE
        assert_serves(client, repos[3], layer)


def test_repush_into_a_repository_holding_a_dangling_placeholder_serves_the_blob(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, cache_keys: dict[str, Any], launched: Launched) -> None:
    """A client told 201 Created for a blob must be able to pull it: a push over a placeholder
    whose original is gone has to store the bytes, not keep the empty reference."""
    server = start_server(launched, tmp_path, moto_s3, bucket, **cache_keys)
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    repos = new_repos(2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            push_blob(client, repo, layer)
        real, refs = holders(moto_s3, bucket, digest)
        assert [repo_of(k) for k in real] == repos[:1] and [repo_of(k) for k in refs] == repos[1:], (real, refs)
        moto_s3.client().delete_object(Bucket=bucket, Key=real[0])
        assert_unknown(client, repos[1], digest)
        assert push_blob(client, repos[1], layer) == digest  # 201
        assert_serves(client, repos[1], layer)
        assert blob_objects(moto_s3, bucket, digest) == {refs[0]: LAYER_SIZE}


def test_mount_creates_a_placeholder_that_serves_the_bytes(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, cache_keys: dict[str, Any], launched: Launched) -> None:
    """A cross-repository mount on S3 copies nothing: a placeholder, resolved on read."""
    server = start_server(launched, tmp_path, moto_s3, bucket, **cache_keys)
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    source, target = new_repos(2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push_blob(client, source, layer)
        mounted = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})
        assert mounted.status_code == 201, (mounted.status_code, mounted.text)
        assert mounted.headers.get("Docker-Content-Digest") == digest
        assert blob_objects(moto_s3, bucket, digest) == {
            f"{source}/blobs/sha256/{digest[7:]}": LAYER_SIZE, f"{target}/blobs/sha256/{digest[7:]}": 0}
        assert_serves(client, target, layer)
        # The mounted copy outlives its source: the source's delete hands the bytes over.
        assert client.delete(f"/v2/{source}/blobs/{digest}").status_code == 202
        assert_serves(client, target, layer)
        assert blob_objects(moto_s3, bucket, digest) == {f"{target}/blobs/sha256/{digest[7:]}": LAYER_SIZE}


def test_empty_blob_is_served_from_every_holder(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """The empty blob is 0 bytes for real, not a placeholder: every holder answers 200 with no body."""
    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=True)
    digest = digest_of(b"")
    repos = new_repos(2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            push_blob(client, repo, b"")
        assert client.delete(f"/v2/{repos[0]}/blobs/{digest}").status_code == 202
        got = client.get(f"/v2/{repos[1]}/blobs/{digest}")
        assert got.status_code == 200 and got.content == b"", (got.status_code, got.text[:200])
        assert got.headers.get("Docker-Content-Digest") == digest
        assert client.head(f"/v2/{repos[1]}/blobs/{digest}").headers.get("Content-Length") == "0"
        assert_unknown(client, repos[0], digest)


def test_dedupe_toggled_off_restores_real_copies_and_back_on_references_again(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """Switching dedupe off must give every holder its own bytes (a later delete of any one
    cannot hurt the others); switching it back on turns the copies into references again."""
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    repos = new_repos(3)
    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=True)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            push_blob(client, repo, layer)
    real, refs = holders(moto_s3, bucket, digest)
    assert len(real) == 1 and len(refs) == 2, blob_objects(moto_s3, bucket, digest)
    server.stop()

    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=False)
    done = run_cli(launched, "dedupe", str(server.config_path), "--reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    objects = blob_objects(moto_s3, bucket, digest)
    assert sorted(objects.values()) == [LAYER_SIZE] * 3, objects
    assert {repo_of(k) for k in objects} == set(repos)
    for key in objects:
        assert object_digest(moto_s3, bucket, key) == digest, key
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            assert_serves(client, repo, layer)
    server.stop()

    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=True)
    done = run_cli(launched, "dedupe", str(server.config_path), "--reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    real, refs = holders(moto_s3, bucket, digest)
    assert len(real) == 1 and len(refs) == 2, blob_objects(moto_s3, bucket, digest)
    assert object_digest(moto_s3, bucket, real[0]) == digest
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            assert_serves(client, repo, layer)


def test_mount_back_into_the_original_s_repository_keeps_its_bytes(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, cache_keys: dict[str, Any], launched: Launched) -> None:
    """Mounting from a reference into the repository holding the original must not empty it."""
    server = start_server(launched, tmp_path, moto_s3, bucket, **cache_keys)
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    original, reference = new_repos(2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push_blob(client, original, layer)
        push_blob(client, reference, layer)
        mounted = client.post(f"/v2/{original}/blobs/uploads/", params={"mount": digest, "from": reference})
        assert mounted.status_code == 201, mounted.text
        for repo in (original, reference):
            assert_serves(client, repo, layer)
    assert holders(moto_s3, bucket, digest) == ([f"{original}/blobs/sha256/{digest[7:]}"],
                                                [f"{reference}/blobs/sha256/{digest[7:]}"])


def test_scrub_follows_references_and_finds_nothing_wrong(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """An image held in two repositories is one set of objects plus placeholders: scrub is clean."""
    server = start_server(launched, tmp_path, moto_s3, bucket)
    first, second = new_repos(2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        image = build_image(client, first, layers=2)
        push_manifest(client, first, "v1", image.manifest)
        for blob in (image.config, *image.layers):
            push_blob(client, second, blob)
        push_manifest(client, second, "v1", image.manifest)
    assert holders(moto_s3, bucket, digest_of(image.layers[0]))[1], "the second repository holds references"
    scrubbed = run_cli(launched, "scrub", str(server.config_path))
    assert scrubbed.returncode == 0, scrubbed.stderr
    assert "0 problems" in scrubbed.stdout, scrubbed.stdout


def test_manifests_made_references_by_reconcile_still_pull(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """Reconcile may turn a manifest held twice into a reference: GET, HEAD and GC still see it whole."""
    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=False)
    first, second = new_repos(2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        image = build_image(client, first, layers=1)
        push_manifest(client, first, "v1", image.manifest)
        for blob in (image.config, *image.layers):
            push_blob(client, second, blob)
        push_manifest(client, second, "v1", image.manifest)
    server.stop()
    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=True, gcDelay="1s")
    assert run_cli(launched, "dedupe", str(server.config_path), "--reconcile").returncode == 0
    assert holders(moto_s3, bucket, image.digest)[1], "one manifest became a reference"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in (first, second):
            got = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": image.media_type})
            assert got.status_code == 200 and got.content == image.manifest, repo
            head = client.head(f"/v2/{repo}/manifests/v1", headers={"Accept": image.media_type})
            assert int(head.headers["Content-Length"]) == len(image.manifest), repo
        server.stop()
        assert run_cli(launched, "gc", str(server.config_path)).returncode == 0
    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=True)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in (first, second):
            for blob in (image.config, *image.layers):
                assert client.get(f"/v2/{repo}/blobs/{digest_of(blob)}").content == blob, repo


def test_dedupe_switched_off_before_the_reconcile_never_serves_or_loses_a_reference(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched, session_redis: RedisServer) -> None:
    """Between switching dedupe off and the reconcile's end, a reference is not followed (there
    is no holder index open): it answers unknown, never 200 with no bytes, and the original it
    needs cannot be deleted from under it."""
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    repos = new_repos(3)
    server = start_server(launched, tmp_path, moto_s3, bucket, dedupe=True)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            push_blob(client, repo, layer)
    server.stop()
    [original], refs = holders(moto_s3, bucket, digest)
    owner = repo_of(original)

    # An API replica alone runs no reconcile: the store stays as dedupe left it.
    (tmp_path / "api").mkdir()
    api = OcistoreServer(tmp_path / "api", storage={"storageDriver": moto_s3.driver_params(bucket), "dedupe": False},
                         extra={"redis": session_redis.url})
    port = free_port()
    proc = subprocess.Popen([str(BIN / "ocistore-api"), str(api.config_path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for key in refs:
                assert_unknown(client, repo_of(key), digest)
            assert_serves(client, owner, layer)
            assert_error(client.delete(f"/v2/{owner}/blobs/{digest}"), 503, "UNAVAILABLE")
            assert holders(moto_s3, bucket, digest)[0] == [original]
    finally:
        stop_process(proc)
    done = run_cli(launched, "dedupe", str(api.config_path), "--reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "after").mkdir()
    server = start_server(launched, tmp_path / "after", moto_s3, bucket, dedupe=False)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for repo in repos:
            assert_serves(client, repo, layer)
        assert client.delete(f"/v2/{owner}/blobs/{digest}").status_code == 202
        assert_serves(client, repos[1] if owner == repos[0] else repos[0], layer)


def test_a_replica_still_on_dedupe_makes_no_references_once_the_store_is_going_off(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """A rolling change of `dedupe` to off: replicas not yet restarted still run with dedupe
    on. The store's own record of the reconcile's target is what they follow, so once it says
    off (while the reconcile walks, and after it) they make copies, never references the
    walk would miss; every holder keeps its bytes when the others go."""
    layer = os.urandom(LAYER_SIZE)
    digest = digest_of(layer)
    repos = new_repos(4)
    (tmp_path / "old").mkdir()
    old = start_server(launched, tmp_path / "old", moto_s3, bucket, dedupe=True)
    with httpx.Client(base_url=old.url, timeout=60) as client:
        push_blob(client, repos[0], layer)
        (tmp_path / "new").mkdir()
        new = OcistoreServer(tmp_path / "new", storage={"storageDriver": moto_s3.driver_params(bucket),
                                                        "dedupe": False})
        done = run_cli(launched, "dedupe", str(new.config_path), "--reconcile")
        assert done.returncode == 0, done.stdout + done.stderr
        # The replica still configured with dedupe on pushes and mounts after the walk.
        push_blob(client, repos[1], layer)
        mounted = client.post(f"/v2/{repos[2]}/blobs/uploads/?mount={digest}&from={repos[0]}")
        assert mounted.status_code == 201, mounted.text
        mounted = client.post(f"/v2/{repos[3]}/blobs/uploads/?mount={digest}")
        assert mounted.status_code == 201, mounted.text
    objects = blob_objects(moto_s3, bucket, digest)
    assert sorted(objects.values()) == [LAYER_SIZE] * 4, objects
    old.stop()
    new.start()
    launched.add(new)
    with httpx.Client(base_url=new.url, timeout=60) as client:
        for repo in repos[:-1]:
            assert client.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202, repo
        assert_serves(client, repos[-1], layer)
