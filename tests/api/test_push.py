"""Push: blob uploads (monolithic, chunked, streamed, mounted) and manifest PUTs."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.api.helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_FOREIGN_LAYER,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    build_image,
    close_session,
    descriptor,
    digest_of,
    media_type_of,
    open_session,
    patch_chunk,
    path_of,
    push_blob,
    push_index,
    push_manifest,
    push_random_image,
)


def assert_blob_created(resp: httpx.Response, repo: str, digest: str) -> None:
    """201 with the blob's Location and digest: what every upload path must end with."""
    assert resp.status_code == 201, resp.text
    assert path_of(resp.headers["Location"]) == f"/v2/{repo}/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest


def assert_pullable(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> None:
    resp = client.get(f"/v2/{repo}/blobs/{digest_of(data, algorithm)}")
    assert resp.status_code == 200 and resp.content == data


def upload_status(client: httpx.Client, location: str) -> httpx.Response:
    resp = client.get(location)
    assert resp.status_code == 204, resp.text
    assert resp.headers["Location"]
    return resp


def test_post_opens_a_session(client: httpx.Client, repo: str) -> None:
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    assert resp.status_code == 202
    assert resp.headers["Location"]
    assert resp.headers["Docker-Upload-UUID"]
    assert resp.headers["Content-Length"] == "0"
    assert resp.headers["Range"] == "0-0"  # what clients expect of an empty session (distribution too)


def test_post_then_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    digest = digest_of(data)
    assert_blob_created(close_session(client, open_session(client, repo), digest, data), repo, digest)
    assert_pullable(client, repo, data)


def test_single_post_with_digest(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3000)
    digest = digest_of(data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
                       headers={"Content-Type": "application/octet-stream"})
    assert_blob_created(resp, repo, digest)
    assert_pullable(client, repo, data)


def test_single_post_with_sha512_digest(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3000)
    digest = digest_of(data, "sha512")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
                       headers={"Content-Type": "application/octet-stream"})
    assert_blob_created(resp, repo, digest)
    assert_pullable(client, repo, data, "sha512")


def test_pushing_an_existing_blob_again_succeeds(client: httpx.Client, repo: str) -> None:
    """Retries of a finished upload must not fail nor corrupt what is there."""
    data = os.urandom(700)
    push_blob(client, repo, data)
    push_blob(client, repo, data)
    assert_pullable(client, repo, data)


def test_chunked_upload_with_content_range(client: httpx.Client, repo: str) -> None:
    """Each chunk's answer counts the whole session in Range, so a client can resume."""
    data = os.urandom(3 * 1024 + 17)
    location = open_session(client, repo)
    offset = 0
    for chunk in (data[:1024], data[1024:2048], data[2048:]):
        resp = patch_chunk(client, location, chunk, start=offset)
        offset += len(chunk)
        assert resp.status_code == 202, resp.text
        assert resp.headers["Range"] == f"0-{offset - 1}"
        assert resp.headers["Docker-Upload-UUID"]
        location = resp.headers["Location"]
    digest = digest_of(data)
    assert_blob_created(close_session(client, location, digest), repo, digest)
    assert_pullable(client, repo, data)


def test_streamed_patch_without_content_range(client: httpx.Client, repo: str) -> None:
    """A streamed chunk is appended at the current offset; Range covers all bytes so far."""
    first, second = os.urandom(1500), os.urandom(900)
    location = open_session(client, repo)
    resp = patch_chunk(client, location, first)
    assert resp.status_code == 202 and resp.headers["Range"] == f"0-{len(first) - 1}"
    resp = patch_chunk(client, resp.headers["Location"], second)
    assert resp.status_code == 202 and resp.headers["Range"] == f"0-{len(first) + len(second) - 1}"
    digest = digest_of(first + second)
    assert_blob_created(close_session(client, resp.headers["Location"], digest), repo, digest)
    assert_pullable(client, repo, first + second)


def test_last_chunk_in_the_closing_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2000)
    location = open_session(client, repo)
    resp = patch_chunk(client, location, data[:1200], start=0)
    assert resp.status_code == 202
    digest = digest_of(data)
    assert_blob_created(close_session(client, resp.headers["Location"], digest, data[1200:]), repo, digest)
    assert_pullable(client, repo, data)


@pytest.mark.parametrize("bad_start", [0, 5, 20], ids=["repeated", "overlapping", "gap"])
def test_out_of_order_chunk_is_416_and_session_unchanged(client: httpx.Client, repo: str, bad_start: int) -> None:
    """A misplaced chunk is refused and leaves the session where it was, so the push can go on."""
    data = os.urandom(20)
    location = open_session(client, repo)
    location = patch_chunk(client, location, data[:10], start=0).headers["Location"]
    assert_error(patch_chunk(client, location, os.urandom(10), start=bad_start), 416, None)
    assert upload_status(client, location).headers["Range"] == "0-9"
    resp = patch_chunk(client, location, data[10:], start=10)
    assert resp.status_code == 202 and resp.headers["Range"] == "0-19"
    digest = digest_of(data)
    assert_blob_created(close_session(client, resp.headers["Location"], digest), repo, digest)
    assert_pullable(client, repo, data)


def test_upload_status(client: httpx.Client, repo: str) -> None:
    """GET on a session tells a resuming client how much the registry already has."""
    location = open_session(client, repo)
    assert upload_status(client, location).headers["Range"] == "0-0"
    location = patch_chunk(client, location, os.urandom(100), start=0).headers["Location"]
    status = upload_status(client, location)
    assert status.headers["Range"] == "0-99"
    assert status.content == b""


def test_upload_delete_cancels_the_session(client: httpx.Client, repo: str) -> None:
    data = os.urandom(100)
    location = open_session(client, repo)
    location = patch_chunk(client, location, data, start=0).headers["Location"]
    assert client.delete(location).status_code == 204
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(close_session(client, location, digest_of(data)), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")


def test_session_of_another_repository_is_unknown(client: httpx.Client, repo: str, other_repo: str) -> None:
    """An upload id only works under the repository that opened it."""
    data = os.urandom(64)
    push_blob(client, other_repo, b"makes the other repository exist")
    location = open_session(client, repo)
    location = patch_chunk(client, location, data[:32], start=0).headers["Location"]
    foreign = location.replace(f"/v2/{repo}/", f"/v2/{other_repo}/")
    assert foreign != location
    assert_error(client.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(client, foreign, data[32:], start=32), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(close_session(client, foreign, digest_of(data), data[32:]), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.head(f"/v2/{other_repo}/blobs/{digest_of(data)}"), 404, None)
    assert upload_status(client, location).headers["Range"] == "0-31"
    digest = digest_of(data)
    assert_blob_created(close_session(client, location, digest, data[32:]), repo, digest)


def test_mount_from_another_repository(client: httpx.Client, repo: str, other_repo: str) -> None:
    data = os.urandom(512)
    digest = push_blob(client, other_repo, data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": other_repo})
    assert_blob_created(resp, repo, digest)
    assert_pullable(client, repo, data)


@pytest.mark.parametrize("case", ["blob-absent", "from-unknown"])
def test_mount_falls_back_to_an_upload_session(client: httpx.Client, repo: str, other_repo: str,
                                               case: str) -> None:
    """When it cannot mount, the registry opens a session instead, and the client uploads."""
    data = os.urandom(256)
    digest = digest_of(data)
    if case == "blob-absent":
        push_blob(client, other_repo, b"something else")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": other_repo})
    assert resp.status_code == 202, resp.text
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, None)
    assert_blob_created(close_session(client, resp.headers["Location"], digest, data), repo, digest)
    assert_pullable(client, repo, data)


def test_mount_without_from(client: httpx.Client, repo: str, other_repo: str) -> None:
    """Spec 1.1: with no `from`, a blob the registry already holds elsewhere may be mounted."""
    data = os.urandom(300)
    digest = push_blob(client, other_repo, data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest})
    assert_blob_created(resp, repo, digest)
    assert_pullable(client, repo, data)


def assert_manifest_created(resp: httpx.Response, repo: str, body: bytes, algorithm: str = "sha256") -> None:
    digest = digest_of(body, algorithm)
    assert resp.status_code == 201, resp.text
    assert path_of(resp.headers["Location"]) == f"/v2/{repo}/manifests/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest


def test_manifest_put_by_tag(client: httpx.Client, repo: str) -> None:
    image = build_image(client, repo)
    assert_manifest_created(push_manifest(client, repo, "latest", image.manifest), repo, image.manifest)
    assert client.get(f"/v2/{repo}/manifests/latest").content == image.manifest
    assert client.get(f"/v2/{repo}/manifests/{image.digest}").content == image.manifest


def test_manifest_put_by_digest(client: httpx.Client, repo: str) -> None:
    image = build_image(client, repo)
    assert_manifest_created(push_manifest(client, repo, image.digest, image.manifest), repo, image.manifest)
    assert client.get(f"/v2/{repo}/manifests/{image.digest}").content == image.manifest


@pytest.mark.parametrize("tags", [["a", "b"], [f"t{i}" for i in range(10)]], ids=["two", "ten"])
def test_manifest_put_with_tag_parameters(client: httpx.Client, repo: str, tags: list[str]) -> None:
    """`?tag=` tags a manifest pushed by digest in one request, echoed in OCI-Tag headers."""
    image = build_image(client, repo)
    resp = client.put(f"/v2/{repo}/manifests/{image.digest}", params=[("tag", t) for t in tags],
                      content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert_manifest_created(resp, repo, image.manifest)
    assert sorted(resp.headers.get_list("OCI-Tag", split_commas=True)) == sorted(tags)
    for tag in tags:
        assert client.get(f"/v2/{repo}/manifests/{tag}").content == image.manifest
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == sorted(tags)


def test_manifest_with_subject_answers_oci_subject(client: httpx.Client, repo: str) -> None:
    """The header tells the client the registry indexed the referrer; the subject may be absent."""
    absent_subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"not pushed"), "size": 10}
    image = build_image(client, repo, subject=absent_subject, artifact_type="application/vnd.example.sig")
    resp = push_manifest(client, repo, image.digest, image.manifest)
    assert_manifest_created(resp, repo, image.manifest)
    assert resp.headers["OCI-Subject"] == absent_subject["digest"]


def test_manifest_without_subject_has_no_oci_subject(client: httpx.Client, repo: str) -> None:
    image = build_image(client, repo)
    assert "OCI-Subject" not in push_manifest(client, repo, "plain", image.manifest).headers


def test_docker_schema2_manifest_and_manifest_list(client: httpx.Client, repo: str) -> None:
    """Docker clients push schema2 images and lists; both are stored and served with their type."""
    images = [push_random_image(client, repo, docker=True) for _ in range(2)]
    for image in images:
        got = client.get(f"/v2/{repo}/manifests/{image.digest}")
        assert got.content == image.manifest and media_type_of(got) == DOCKER_MANIFEST
    body = push_index(client, repo, "multi", images, DOCKER_LIST)
    got = client.get(f"/v2/{repo}/manifests/multi")
    assert got.content == body
    assert media_type_of(got) == DOCKER_LIST
    assert got.headers["Docker-Content-Digest"] == digest_of(body)


def test_oci_image_index(client: httpx.Client, repo: str) -> None:
    images = [push_random_image(client, repo) for _ in range(2)]
    body = push_index(client, repo, "multi", images)
    got = client.get(f"/v2/{repo}/manifests/multi")
    assert got.content == body
    assert media_type_of(got) == OCI_INDEX
    assert got.headers["Docker-Content-Digest"] == digest_of(body)


def test_manifest_is_stored_byte_for_byte(client: httpx.Client, repo: str) -> None:
    """Signatures cover the exact bytes: the digest is of what was sent, never re-serialised JSON."""
    image = build_image(client, repo)
    doc = json.loads(image.manifest)
    body = (
        "{\n\t\"schemaVersion\" :2 ,\r\n  \"layers\":" + json.dumps(doc["layers"], indent=7)
        + ",\"config\":   " + json.dumps(doc["config"], separators=(",", ":"))
        + ",\n\"mediaType\":\"" + OCI_MANIFEST + "\", \"annotations\": {\"note\": \"caf\\u00e9 \u2603\"}\n}\n\n"
    ).encode()
    resp = push_manifest(client, repo, "odd", body)
    assert_manifest_created(resp, repo, body)
    for ref in ("odd", digest_of(body)):
        got = client.get(f"/v2/{repo}/manifests/{ref}")
        assert got.content == body
        assert got.headers["Docker-Content-Digest"] == digest_of(body)


def test_foreign_layer_is_accepted_without_its_blob(client: httpx.Client, repo: str) -> None:
    """Non-distributable layers live at their `urls`; the registry never gets their bytes."""
    image = build_image(client, repo, layers=1)
    doc = json.loads(image.manifest)
    doc["layers"].append(descriptor(OCI_FOREIGN_LAYER, os.urandom(2048),
                                    urls=["https://example.com/layers/foreign.tar.gz"]))
    body = json.dumps(doc).encode()
    assert_manifest_created(push_manifest(client, repo, "foreign", body), repo, body)
    assert client.get(f"/v2/{repo}/manifests/foreign").content == body


def test_artifact_with_custom_config_type(client: httpx.Client, repo: str) -> None:
    image = build_image(client, repo, layers=1, config_media_type="application/vnd.example.thing.config.v1+json")
    assert_manifest_created(push_manifest(client, repo, "thing", image.manifest), repo, image.manifest)


def test_pushing_a_tag_again_moves_it(client: httpx.Client, repo: str) -> None:
    old = push_random_image(client, repo, "latest")
    new = push_random_image(client, repo, "latest")
    assert client.get(f"/v2/{repo}/manifests/latest").content == new.manifest
    assert client.get(f"/v2/{repo}/manifests/{old.digest}").content == old.manifest


def test_pushed_layer_is_pullable_through_the_manifest(client: httpx.Client, repo: str) -> None:
    """The whole round trip a user does: push an image, then pull its manifest and every blob."""
    image = push_random_image(client, repo, "v1", layers=3)
    doc = client.get(f"/v2/{repo}/manifests/v1").json()
    assert [layer["mediaType"] for layer in doc["layers"]] == [OCI_LAYER] * 3
    for desc, blob in zip([doc["config"], *doc["layers"]], [image.config, *image.layers], strict=True):
        assert client.get(f"/v2/{repo}/blobs/{desc['digest']}").content == blob

