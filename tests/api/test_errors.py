"""A catalogue of bad inputs: each gets the spec's status and JSON error, and harms nothing stored.

Every test starts from `stored` (a blob and a tagged image in the test's repository) and
ends by checking it is still whole, so a rejected request can never be a destructive one.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Stored,
    assert_error,
    assert_intact,
    close_session,
    descriptor,
    digest_of,
    open_session,
    patch_chunk,
    raw_request,
)
from tests.servers import OcistoreServer, stored_files

BAD_NAMES = {
    "uppercase": "test/Upper",
    "encoded-slash": "test%2Fslash",
    "encoded-dotdot": "test/%2e%2e/x",
    "encoded-dotdot-upper": "test/%2E%2E/x",
    "dotdot": "test/../x",
    "dot": "test/./x",
    "double-slash": "test//x",
    "nul": "test/x%00y",
    "leading-separator": "-test/x",
    "trailing-separator": "test/x_",
    "too-long": "a" * 256,
}

BAD_DIGESTS = {
    "short": "sha256:abc",
    "non-hex": "sha256:" + "g" * 64,
    "uppercase-hex": "sha256:" + "A" * 64,
    "sha512-too-short": "sha512:" + "a" * 64,
    "too-long": "sha256:" + "a" * 65,
    "no-algorithm": ":" + "a" * 64,
    "no-encoded": "sha256:",
    "encoded-dotdot": "sha256:%2e%2e",
}

UNKNOWN_UPLOADS = {
    "uuid": str(uuid.UUID(int=0x1234)),
    "word": "nope",
    "encoded-dotdot": "%2e%2e",
    "encoded-traversal": "..%2F..%2Fblobs",
    "encoded-uploads-dir": "%2e%2e%2f.uploads",
    "dotdot": "..",
}


def manifest_of(stored: Stored, **changes: Any) -> bytes:
    """The stored image's manifest with some fields replaced: a plausible but broken push."""
    doc = json.loads(stored.image.manifest)
    doc.update(changes)
    return json.dumps(doc).encode()


def name_request(base_url: str, name: str, endpoint: str, stored: Stored) -> httpx.Response:
    digest = stored.blob_digest
    requests: dict[str, tuple[str, str, bytes, dict[str, str]]] = {
        "tags": ("GET", "tags/list", b"", {}),
        "manifest-get": ("GET", "manifests/latest", b"", {}),
        "manifest-put": ("PUT", "manifests/latest", stored.image.manifest, {"Content-Type": OCI_MANIFEST}),
        "blob-get": ("GET", f"blobs/{digest}", b"", {}),
        "upload-post": ("POST", f"blobs/uploads/?digest={digest}", stored.blob,
                        {"Content-Type": "application/octet-stream"}),
    }
    method, suffix, body, headers = requests[endpoint]
    return raw_request(base_url, method, f"/v2/{name}/{suffix}", body, headers)


@pytest.mark.parametrize("endpoint", ["tags", "manifest-get", "manifest-put", "blob-get", "upload-post"])
@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_bad_repository_name(client: httpx.Client, registry: OcistoreServer, stored: Stored,
                             name: str, endpoint: str) -> None:
    """Names are checked on the raw path, so no encoding trick reaches storage as a path."""
    assert_error(name_request(registry.url, name, endpoint, stored), 400, "NAME_INVALID")
    assert_intact(client, stored)


def test_path_tricks_write_nothing_outside_the_store(client: httpx.Client, registry: OcistoreServer,
                                                     stored: Stored) -> None:
    """Traversal attempts through names leave no file anywhere near the storage root."""
    marker = f"escape{uuid.uuid4().hex[:8]}"
    for name in (f"%2e%2e/%2e%2e/{marker}", f"test/%2e%2e%2f%2e%2e%2f{marker}", f"..%2F..%2F{marker}",
                 f"test/../../{marker}"):
        for endpoint in ("manifest-put", "upload-post"):
            assert_error(name_request(registry.url, name, endpoint, stored), 400, "NAME_INVALID")
    base = registry.root.parent.parent
    assert [str(p) for p in base.rglob(f"*{marker}*")] == []
    for top in ("", "test"):  # the whole default store, and the suite's (S3 in some modes)
        assert [f for f in stored_files(registry.config_path, top) if marker in f] == []
    assert_intact(client, stored)


def digest_request(client: httpx.Client, stored: Stored, place: str, bad: str) -> httpx.Response:
    repo = stored.repo
    octets = {"Content-Type": "application/octet-stream"}
    if place == "blob-get":
        return client.get(f"/v2/{repo}/blobs/{bad}")
    if place == "blob-head":
        return client.head(f"/v2/{repo}/blobs/{bad}")
    if place == "blob-delete":
        return client.delete(f"/v2/{repo}/blobs/{bad}")
    if place == "manifest-get":
        return client.get(f"/v2/{repo}/manifests/{bad}")
    if place == "manifest-head":
        return client.head(f"/v2/{repo}/manifests/{bad}")
    if place == "manifest-delete":
        return client.delete(f"/v2/{repo}/manifests/{bad}")
    if place == "manifest-put":
        return client.put(f"/v2/{repo}/manifests/{bad}", content=stored.image.manifest,
                          headers={"Content-Type": OCI_MANIFEST})
    if place == "upload-post":
        return client.post(f"/v2/{repo}/blobs/uploads/?digest={bad}", content=stored.blob, headers=octets)
    if place == "upload-put":
        location = open_session(client, repo)
        return client.put(location + ("&" if "?" in location else "?") + f"digest={bad}",
                          content=stored.blob, headers=octets)
    assert place == "referrers"
    return client.get(f"/v2/{repo}/referrers/{bad}")


@pytest.mark.parametrize("place", ["blob-get", "blob-head", "blob-delete", "manifest-get", "manifest-head",
                                   "manifest-delete", "manifest-put", "upload-post", "upload-put", "referrers"])
@pytest.mark.parametrize("bad", list(BAD_DIGESTS.values()), ids=list(BAD_DIGESTS))
def test_malformed_digest(client: httpx.Client, stored: Stored, place: str, bad: str) -> None:
    """A malformed digest is the client's mistake (400), never a 404 or a 500; HEAD gets no body."""
    assert_error(digest_request(client, stored, place, bad), 400, "DIGEST_INVALID")
    assert_intact(client, stored)


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("upload", list(UNKNOWN_UPLOADS.values()), ids=list(UNKNOWN_UPLOADS))
def test_unknown_upload_id(client: httpx.Client, registry: OcistoreServer, stored: Stored,
                           upload: str, method: str) -> None:
    """An id the server never gave out, however path-like, names no session and no file."""
    live = open_session(client, stored.repo)
    live = patch_chunk(client, live, b"0123456789", start=0).headers["Location"]
    path = f"/v2/{stored.repo}/blobs/uploads/{upload}"
    if method == "PUT":
        path += f"?digest={stored.blob_digest}"
    body = b"" if method in ("GET", "DELETE") else stored.blob
    resp = raw_request(registry.url, method, path, body, {"Content-Type": "application/octet-stream"})
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.get(live).headers["Range"] == "0-9"
    assert_intact(client, stored)


@pytest.mark.parametrize(
    ("content_range", "size"),
    [("abc", 10), ("10-", 10), ("20-29", 10), ("0-9", 10), ("10-14", 10), ("19-10", 10)],
    ids=["garbage", "open-ended", "gap", "repeated", "length-mismatch", "reversed"],
)
def test_bad_content_range(client: httpx.Client, stored: Stored, content_range: str, size: int) -> None:
    """Any chunk that does not start at the session's offset with its own length is 416, session kept."""
    data = os.urandom(20)
    location = open_session(client, stored.repo)
    location = patch_chunk(client, location, data[:10], start=0).headers["Location"]
    resp = client.patch(location, content=os.urandom(size),
                        headers={"Content-Range": content_range, "Content-Type": "application/octet-stream"})
    assert_error(resp, 416, None)
    status = client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-9"
    resp = patch_chunk(client, location, data[10:], start=10)
    assert resp.status_code == 202, resp.text
    resp = close_session(client, resp.headers["Location"], digest_of(data))
    assert resp.status_code == 201, resp.text
    assert client.get(f"/v2/{stored.repo}/blobs/{digest_of(data)}").content == data
    assert_intact(client, stored)


def test_digest_mismatch_on_single_post(client: httpx.Client, stored: Stored) -> None:
    """Claiming a stored blob's digest for other bytes must neither store them nor overwrite it."""
    impostor = os.urandom(333)
    resp = client.post(f"/v2/{stored.repo}/blobs/uploads/", params={"digest": stored.blob_digest},
                       content=impostor, headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{stored.repo}/blobs/{digest_of(impostor)}"), 404, None)
    assert_intact(client, stored)


def test_digest_mismatch_on_fresh_digest(client: httpx.Client, stored: Stored) -> None:
    claimed = digest_of(b"what the client meant to send")
    resp = client.post(f"/v2/{stored.repo}/blobs/uploads/", params={"digest": claimed},
                       content=b"what it sent", headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{stored.repo}/blobs/{claimed}"), 404, None)
    assert_error(client.head(f"/v2/{stored.repo}/blobs/{digest_of(b'what it sent')}"), 404, None)
    assert_intact(client, stored)


@pytest.mark.parametrize("last_chunk", [b"", b"tail"], ids=["patched-only", "tail-in-put"])
def test_digest_mismatch_on_chunked_upload(client: httpx.Client, stored: Stored, last_chunk: bytes) -> None:
    impostor = os.urandom(200)
    location = open_session(client, stored.repo)
    location = patch_chunk(client, location, impostor, start=0).headers["Location"]
    assert_error(close_session(client, location, stored.blob_digest, last_chunk), 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{stored.repo}/blobs/{digest_of(impostor + last_chunk)}"), 404, None)
    assert_intact(client, stored)


def bad_manifest(stored: Stored, case: str) -> tuple[bytes, str]:
    """Body and Content-Type of a manifest PUT that must be refused."""
    missing = os.urandom(99)
    layers = json.loads(stored.image.manifest)["layers"]
    cases: dict[str, tuple[bytes, str]] = {
        "not-json": (b'{"schemaVersion": 2, "mediaType": ', OCI_MANIFEST),
        "json-array": (b"[]", OCI_MANIFEST),
        "no-config": (manifest_of(stored, config=None), OCI_MANIFEST),
        "schema-version-1": (manifest_of(stored, schemaVersion=1), OCI_MANIFEST),
        "body-type-differs": (manifest_of(stored, mediaType=OCI_INDEX), OCI_MANIFEST),
        "unknown-content-type": (manifest_of(stored, annotations={"pushed": "as text"}), "text/plain"),
        "index-as-manifest": (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
                              OCI_MANIFEST),
        "missing-config": (manifest_of(stored, config=descriptor(OCI_CONFIG, missing)), OCI_MANIFEST),
        "missing-layer": (manifest_of(stored, layers=[*layers, descriptor(OCI_LAYER, missing)]), OCI_MANIFEST),
        "missing-child": (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": [descriptor(OCI_MANIFEST, missing)]}).encode(), OCI_INDEX),
    }
    return cases[case]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("not-json", "MANIFEST_INVALID"),
        ("json-array", "MANIFEST_INVALID"),
        ("no-config", "MANIFEST_INVALID"),
        ("schema-version-1", "MANIFEST_INVALID"),
        ("body-type-differs", "MANIFEST_INVALID"),
        ("unknown-content-type", "MANIFEST_INVALID"),
        ("index-as-manifest", "MANIFEST_INVALID"),
        ("missing-config", "MANIFEST_BLOB_UNKNOWN"),
        ("missing-layer", "MANIFEST_BLOB_UNKNOWN"),
        ("missing-child", "MANIFEST_BLOB_UNKNOWN"),
    ],
)
def test_bad_manifest_under_an_existing_tag(client: httpx.Client, stored: Stored, case: str, code: str) -> None:
    """A refused manifest pushed over a live tag must leave the tag on the old image."""
    body, media_type = bad_manifest(stored, case)
    resp = client.put(f"/v2/{stored.repo}/manifests/{stored.tag}", content=body,
                      headers={"Content-Type": media_type})
    assert_error(resp, 400, code)
    assert_error(client.head(f"/v2/{stored.repo}/manifests/{digest_of(body)}"), 404, None)
    assert_intact(client, stored)


def test_manifest_digest_reference_mismatch(client: httpx.Client, stored: Stored) -> None:
    """A manifest PUT under a digest must hash to that digest."""
    body = manifest_of(stored, annotations={"changed": "yes"})
    resp = client.put(f"/v2/{stored.repo}/manifests/{stored.image.digest}", content=body,
                      headers={"Content-Type": OCI_MANIFEST})
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{stored.repo}/manifests/{digest_of(body)}"), 404, None)
    assert client.get(f"/v2/{stored.repo}/manifests/{stored.image.digest}").content == stored.image.manifest
    assert_intact(client, stored)


def test_manifest_over_4_mib_is_413(client: httpx.Client, stored: Stored) -> None:
    body = manifest_of(stored, annotations={"padding": "x" * (4 * 1024 * 1024)})
    resp = client.put(f"/v2/{stored.repo}/manifests/{stored.tag}", content=body,
                      headers={"Content-Type": OCI_MANIFEST})
    assert_error(resp, 413, None)
    assert_intact(client, stored)


def test_errors_on_a_repository_that_does_not_exist(client: httpx.Client, repo: str) -> None:
    """Reads in an unknown repository are 404 with the spec's body, and create nothing."""
    digest = digest_of(b"x")
    assert_error(client.get(f"/v2/{repo}/manifests/latest"), 404, None)
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, None)
    assert_error(client.get(f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"), 404, None)
    assert_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
