"""The layout is not a namespace to squat: a name that would put a repository where a layout
keeps its own entries (`index.json`, `oci-layout`, `blobs/...`) is refused at every endpoint,
and a repository appears in the catalog once it holds a manifest, not when an upload opens."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.api.helpers import (
    OCI_MANIFEST,
    Stored,
    assert_error,
    assert_intact,
    close_session,
    digest_of,
    open_session,
    path_of,
    push_blob,
    raw_request,
)
from tests.conftest import Deployment
from tests.servers import OcistoreServer, blob_file


def squatting_names(stored: Stored) -> dict[str, str]:
    encoded = stored.blob_digest.split(":", 1)[1]
    return {
        "index.json": f"{stored.repo}/index.json",
        "oci-layout": f"{stored.repo}/oci-layout",
        "blobs": f"{stored.repo}/blobs",
        "blob-dir": f"{stored.repo}/blobs/sha256/{encoded}",
        "nested-in-blob-dir": f"{stored.repo}/blobs/sha256/{encoded}/x",
        "top-level-blobs": "blobs/x",
    }


ENDPOINTS = {
    "tags": ("GET", "tags/list"),
    "manifest-get": ("GET", "manifests/latest"),
    "manifest-head": ("HEAD", "manifests/latest"),
    "manifest-put": ("PUT", "manifests/latest"),
    "manifest-delete": ("DELETE", "manifests/latest"),
    "blob-get": ("GET", "blobs/{digest}"),
    "blob-head": ("HEAD", "blobs/{digest}"),
    "blob-delete": ("DELETE", "blobs/{digest}"),
    "upload-post": ("POST", "blobs/uploads/"),
    "upload-monolithic": ("POST", "blobs/uploads/?digest={digest}"),
    "upload-mount": ("POST", "blobs/uploads/?mount={digest}&from={repo}"),
    "upload-patch": ("PATCH", "blobs/uploads/{session}"),
    "upload-put": ("PUT", "blobs/uploads/{session}?digest={digest}"),
    "upload-get": ("GET", "blobs/uploads/{session}"),
    "upload-delete": ("DELETE", "blobs/uploads/{session}"),
    "referrers": ("GET", "referrers/{digest}"),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_a_name_overlapping_a_layout_is_refused_and_says_why(
        client: httpx.Client, registry: Deployment, stored: Stored, endpoint: str) -> None:
    method, suffix = ENDPOINTS[endpoint]
    suffix = suffix.format(digest=stored.blob_digest, repo=stored.repo, session=uuid.uuid4())
    body, headers = b"", {}
    if method in ("PUT", "POST", "PATCH"):
        body = stored.image.manifest if endpoint == "manifest-put" else stored.blob
        headers = {"Content-Type": OCI_MANIFEST if endpoint == "manifest-put" else "application/octet-stream"}
    for kind, name in squatting_names(stored).items():
        resp = raw_request(registry.url, method, f"/v2/{name}/{suffix}", body, headers)
        assert_error(resp, 400, "NAME_INVALID")
        if method != "HEAD":
            assert "reserved" in resp.json()["errors"][0]["message"], kind
    assert_intact(client, stored)
    catalog = client.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
    assert not set(squatting_names(stored).values()) & set(catalog)


def test_a_mount_from_a_squatting_name_is_an_ordinary_upload(client: httpx.Client, stored: Stored,
                                                             other_repo: str) -> None:
    """`from=` is not a request path, so it is not refused: it just names no repository."""
    resp = client.post(f"/v2/{other_repo}/blobs/uploads/",
                       params={"mount": stored.blob_digest, "from": f"{stored.repo}/blobs"})
    assert resp.status_code == 202, resp.text
    assert client.head(f"/v2/{other_repo}/blobs/{stored.blob_digest}").status_code == 404


def test_an_upload_alone_creates_no_repository(client: httpx.Client, repo: str) -> None:
    open_session(client, repo)
    push_blob(client, f"{repo}-blob-only", os.urandom(100))
    catalog = client.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
    assert repo not in catalog and f"{repo}-blob-only" not in catalog
    assert_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("occupied", [False, True], ids=["empty-dir", "dir-with-content"])
def test_a_directory_at_a_blob_path_is_not_a_blob(fresh_server: OcistoreServer, occupied: bool) -> None:
    """A layout copied in by hand may hold anything; a directory is never taken for a blob. A
    push of that digest replaces an empty one, and is refused (never 201 over it) otherwise."""
    data = os.urandom(1000)
    digest = digest_of(data)
    with httpx.Client(base_url=fresh_server.url, timeout=30) as client:
        push_blob(client, "layout/other", os.urandom(10))
        squatted = blob_file(fresh_server.root, "layout/other", digest)
        squatted.mkdir(parents=True)
        if occupied:
            (squatted / "something").write_bytes(b"x")
        assert_error(client.get(f"/v2/layout/other/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert_error(client.head(f"/v2/layout/other/blobs/{digest}"), 404, None)
        mount = client.post("/v2/layout/mounted/blobs/uploads/", params={"mount": digest, "from": "layout/other"})
        assert mount.status_code == 202, mount.text
        resp = close_session(client, path_of(open_session(client, "layout/other")), digest, data)
        if occupied:
            assert_error(resp, 500, "UNKNOWN")
            assert "directory" in resp.json()["errors"][0]["message"]
            assert client.head(f"/v2/layout/other/blobs/{digest}").status_code == 404
            assert (squatted / "something").read_bytes() == b"x"
        else:
            assert resp.status_code == 201, resp.text
            assert client.get(f"/v2/layout/other/blobs/{digest}").content == data
