"""GC on S3: the shared algorithm run over the S3 driver (age = LastModified), by the CLI and
by the server's own sweep, including the abort of multipart uploads a crashed writer left."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx

from tests.api.helpers import OCI_LAYER, OCI_MANIFEST, build_image, descriptor, digest_of, push_blob, push_manifest
from tests.moto import MotoServer
from tests.s3.conftest import Launched, blob_objects, object_digest, run_cli
from tests.servers import OcistoreServer, wait_until

GC_DELAY = 1.0
SWEEP_WAIT = 15.0


def gc_server(launched: Launched, workdir: Path, moto: MotoServer, bucket: str,
              interval: str = "1h") -> OcistoreServer:
    server = OcistoreServer(workdir, storage={
        "storageDriver": moto.driver_params(bucket), "gc": True, "gcDelay": f"{GC_DELAY:g}s",
        "gcInterval": interval})
    launched.add(server)
    return server.start()


def pull_verified(client: httpx.Client, repo: str, tag: str) -> None:
    resp = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    for desc in (doc["config"], *doc["layers"]):
        blob = client.get(f"/v2/{repo}/blobs/{desc['digest']}")
        assert blob.status_code == 200, (repo, desc["digest"], blob.status_code)
        assert digest_of(blob.content) == desc["digest"]


def test_cli_gc_on_s3_removes_a_deleted_image_and_keeps_a_tagged_one(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """The deleted image's objects go; the tagged image of another repository stays whole,
    including a layer whose original object was in the collected repository."""
    tag = uuid.uuid4().hex[:8]
    doomed, kept = f"gc/{tag}-doomed", f"gc/{tag}-kept"
    shared = os.urandom(200_000)
    server = gc_server(launched, tmp_path, moto_s3, bucket)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push_blob(client, doomed, shared)  # the doomed repository holds the bytes, the kept one a reference
        doomed_image = build_image(client, doomed)
        doomed_manifest = _with_layer(doomed_image.manifest, shared)
        push_manifest(client, doomed, "v1", doomed_manifest)
        push_blob(client, kept, shared)
        kept_image = build_image(client, kept)
        push_manifest(client, kept, "v1", _with_layer(kept_image.manifest, shared))
        assert blob_objects(moto_s3, bucket, digest_of(shared))[f"{kept}/blobs/sha256/{digest_of(shared)[7:]}"] == 0
        deleted = client.delete(f"/v2/{doomed}/manifests/{digest_of(doomed_manifest)}")
        assert deleted.status_code == 202, deleted.text
    # Stopped, so the collection seen below is the CLI's and not the server's delayed job.
    server.stop()
    time.sleep(GC_DELAY + 1.2)  # past gcDelay, with LastModified's one-second granularity

    done = run_cli(launched, "gc", str(server.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    left = [k for k in moto_s3.keys(bucket) if k.startswith(f"{doomed}/blobs/")]
    assert left == [], left
    shared_objects = blob_objects(moto_s3, bucket, digest_of(shared))
    assert list(shared_objects) == [f"{kept}/blobs/sha256/{digest_of(shared)[7:]}"], shared_objects
    assert object_digest(moto_s3, bucket, next(iter(shared_objects))) == digest_of(shared)

    server = gc_server(launched, tmp_path, moto_s3, bucket)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        pull_verified(client, kept, "v1")
        assert client.get(f"/v2/{doomed}/manifests/v1").status_code == 404
        assert client.get(f"/v2/{doomed}/blobs/{digest_of(shared)}").status_code == 404


def _with_layer(manifest: bytes, layer: bytes) -> bytes:
    """The manifest with one more layer (already pushed) appended."""
    doc = json.loads(manifest)
    doc["layers"].append(descriptor(OCI_LAYER, layer))
    return json.dumps(doc).encode()


def abandon_multipart_upload(moto: MotoServer, bucket: str, key: str) -> str:
    """A multipart upload with one part, never completed: what a crashed writer leaves."""
    s3 = moto.client()
    upload_id = str(s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=os.urandom(1024))
    return upload_id


def test_abandoned_multipart_uploads_are_aborted_by_the_sweep_and_by_cli_gc(
        tmp_path: Path, moto_s3: MotoServer, bucket: str, launched: Launched) -> None:
    """Parts of an unfinished multipart upload are billed and invisible to listings: GC aborts them.

    moto reports every upload as initiated in 2010, so any upload counts as older than gcDelay.
    """
    # Abandoned before the server starts: a sweep (any upload counts as old on moto) must not
    # abort it while the test is still putting its part in.
    abandon_multipart_upload(moto_s3, bucket, "gc/crashed/_uploads/one")
    server = gc_server(launched, tmp_path, moto_s3, bucket, interval="2s")
    assert wait_until(lambda: not moto_s3.uploads(bucket), SWEEP_WAIT), moto_s3.uploads(bucket)
    server.stop()

    abandon_multipart_upload(moto_s3, bucket, "gc/crashed/_uploads/two")
    done = run_cli(launched, "gc", str(server.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert moto_s3.uploads(bucket) == []
    assert "aborted 1 abandoned multipart upload" in done.stdout, done.stdout
