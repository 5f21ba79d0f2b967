"""Pull: the version check, blobs (whole and ranged) and manifests, as a client fetches them."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.api.helpers import (
    OCI_MANIFEST,
    assert_error,
    digest_of,
    media_type_of,
    push_blob,
    push_manifest,
    push_random_image,
)

SIZE = 4096


@pytest.fixture
def big_blob(client: httpx.Client, repo: str) -> bytes:
    data = os.urandom(SIZE)
    push_blob(client, repo, data)
    return data


def test_base_endpoint_says_v2(client: httpx.Client) -> None:
    """Clients probe /v2/ and look for the API version header before anything else."""
    resp = client.get("/v2/")
    assert resp.status_code == 200
    assert resp.json() == {}
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_blob_head_reports_size_and_digest(client: httpx.Client, repo: str, big_blob: bytes) -> None:
    """HEAD is how pushers skip uploads: it must tell size and digest without the bytes."""
    digest = digest_of(big_blob)
    resp = client.head(f"/v2/{repo}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.content == b""


def test_blob_get_returns_the_bytes(client: httpx.Client, repo: str, big_blob: bytes) -> None:
    digest = digest_of(big_blob)
    resp = client.get(f"/v2/{repo}/blobs/{digest}")
    assert resp.status_code == 200
    assert resp.content == big_blob
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Content-Length"] == str(SIZE)


def test_unknown_blob_is_blob_unknown(client: httpx.Client, repo: str, big_blob: bytes) -> None:
    missing = digest_of(b"never pushed")
    assert_error(client.get(f"/v2/{repo}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/blobs/{missing}"), 404, None)


def test_blob_of_another_repository_is_not_visible(client: httpx.Client, repo: str, other_repo: str,
                                                   big_blob: bytes) -> None:
    """A repository serves only what it holds, even if the store has the bytes elsewhere."""
    push_blob(client, other_repo, b"keeps the other repository in existence")
    digest = digest_of(big_blob)
    assert_error(client.get(f"/v2/{other_repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{other_repo}/blobs/{digest}"), 404, None)


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=-7", SIZE - 7, SIZE - 1),
        ("bytes=4000-9999", 4000, SIZE - 1),
        (f"bytes=-{SIZE * 2}", 0, SIZE - 1),
    ],
    ids=["first-byte", "closed", "open-end", "suffix", "end-past-size", "suffix-longer-than-blob"],
)
def test_blob_range_gives_partial_content(client: httpx.Client, repo: str, big_blob: bytes,
                                          range_header: str, start: int, end: int) -> None:
    """Resumable pulls ask for the rest of a blob; RFC 9110 clamps ends past the size."""
    resp = client.get(f"/v2/{repo}/blobs/{digest_of(big_blob)}", headers={"Range": range_header})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.content == big_blob[start:end + 1]


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=20-10"],
                         ids=["start-at-size", "past-end", "end-before-start"])
def test_unsatisfiable_range_is_416(client: httpx.Client, repo: str, big_blob: bytes, range_header: str) -> None:
    """The client must learn the real size from `Content-Range: bytes */size` to recover."""
    resp = client.get(f"/v2/{repo}/blobs/{digest_of(big_blob)}", headers={"Range": range_header})
    assert_error(resp, 416, None)
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"


def test_sha512_blob_end_to_end(client: httpx.Client, repo: str) -> None:
    """sha512 is a registered algorithm: upload, HEAD, GET and ranges all work with it."""
    data = os.urandom(1000)
    digest = push_blob(client, repo, data, "sha512")
    assert digest.startswith("sha512:") and len(digest) == 7 + 128
    head = client.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["Content-Length"] == "1000"
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
    part = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]


def test_sha512_manifest_end_to_end(client: httpx.Client, repo: str) -> None:
    """A manifest pushed under a sha512 reference is addressed by its sha512 digest afterwards."""
    image = push_random_image(client, repo, algorithm="sha512")
    digest = image.digest
    assert digest.startswith("sha512:")
    got = client.get(f"/v2/{repo}/manifests/{digest}")
    assert got.status_code == 200
    assert got.content == image.manifest
    assert got.headers["Docker-Content-Digest"] == digest
    assert client.head(f"/v2/{repo}/manifests/{digest}").headers["Docker-Content-Digest"] == digest
    for blob in (image.config, *image.layers):
        assert client.get(f"/v2/{repo}/blobs/{digest_of(blob, 'sha512')}").content == blob


def test_sha512_manifest_pushed_by_tag(client: httpx.Client, repo: str) -> None:
    """A manifest whose blobs are sha512 is accepted under a tag and pulled back unchanged."""
    image = push_random_image(client, repo, "v512", algorithm="sha512")
    got = client.get(f"/v2/{repo}/manifests/v512")
    assert got.status_code == 200 and got.content == image.manifest


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_manifest_get_headers(client: httpx.Client, repo: str, by: str) -> None:
    """Clients dispatch on Content-Type and verify with Docker-Content-Digest."""
    image = push_random_image(client, repo, "v1")
    ref = "v1" if by == "tag" else image.digest
    resp = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    assert resp.content == image.manifest
    assert media_type_of(resp) == OCI_MANIFEST
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert resp.headers["Content-Length"] == str(len(image.manifest))


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_manifest_head_headers(client: httpx.Client, repo: str, by: str) -> None:
    """HEAD on a manifest is how clients resolve a tag to a digest without pulling."""
    image = push_random_image(client, repo, "v1")
    ref = "v1" if by == "tag" else image.digest
    resp = client.head(f"/v2/{repo}/manifests/{ref}")
    assert resp.status_code == 200
    assert resp.content == b""
    assert media_type_of(resp) == OCI_MANIFEST
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert resp.headers["Content-Length"] == str(len(image.manifest))


def test_manifest_content_type_is_the_pushed_one(client: httpx.Client, repo: str) -> None:
    """An artifact manifest with no mediaType field comes back with the Content-Type it was pushed with."""
    image = push_random_image(client, repo)
    body = image.manifest.replace(b'"mediaType": "' + OCI_MANIFEST.encode() + b'", ', b"", 1)
    assert body != image.manifest
    push_manifest(client, repo, "bare", body, OCI_MANIFEST)
    resp = client.get(f"/v2/{repo}/manifests/bare")
    assert resp.content == body
    assert media_type_of(resp) == OCI_MANIFEST


def test_unknown_manifest_is_manifest_unknown(client: httpx.Client, repo: str) -> None:
    push_random_image(client, repo, "present")
    missing = digest_of(b"no such manifest")
    for ref in ("absent", missing):
        assert_error(client.get(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        assert_error(client.head(f"/v2/{repo}/manifests/{ref}"), 404, None)


def test_unknown_repository_is_name_unknown(client: httpx.Client, repo: str) -> None:
    """A valid name that holds nothing is NAME_UNKNOWN, not an empty list."""
    assert_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
