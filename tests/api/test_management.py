"""Content management: deleting manifests (by digest and by tag) and blobs."""

from __future__ import annotations

import os

import httpx

from tests.api.helpers import (
    OCI_MANIFEST,
    assert_error,
    build_image,
    digest_of,
    push_blob,
    push_manifest,
    push_random_image,
    tag_all,
)


def tags_of(client: httpx.Client, repo: str) -> list[str]:
    resp = client.get(f"/v2/{repo}/tags/list")
    assert resp.status_code == 200, resp.text
    tags: list[str] = resp.json()["tags"]
    return tags


def test_delete_manifest_by_digest_removes_it_and_its_tags(client: httpx.Client, repo: str) -> None:
    doomed = push_random_image(client, repo, "old")
    tag_all(client, repo, doomed, ["old-too"])
    kept = push_random_image(client, repo, "keep")
    assert client.delete(f"/v2/{repo}/manifests/{doomed.digest}").status_code == 202
    assert_error(client.get(f"/v2/{repo}/manifests/{doomed.digest}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/manifests/{doomed.digest}"), 404, None)
    for tag in ("old", "old-too"):
        assert_error(client.get(f"/v2/{repo}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")
    assert tags_of(client, repo) == ["keep"]
    assert client.get(f"/v2/{repo}/manifests/keep").content == kept.manifest


def test_delete_by_tag_removes_only_the_tag(client: httpx.Client, repo: str) -> None:
    """Untagging must not take the image away from anyone who pulls it by digest."""
    image = push_random_image(client, repo, "a")
    tag_all(client, repo, image, ["b"])
    assert client.delete(f"/v2/{repo}/manifests/a").status_code == 202
    assert_error(client.get(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{repo}/manifests/{image.digest}").content == image.manifest
    assert client.get(f"/v2/{repo}/manifests/b").content == image.manifest
    assert tags_of(client, repo) == ["b"]


def test_delete_unknown_manifest(client: httpx.Client, repo: str) -> None:
    push_random_image(client, repo, "present")
    assert_error(client.delete(f"/v2/{repo}/manifests/{digest_of(b'absent')}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.delete(f"/v2/{repo}/manifests/absent"), 404, "MANIFEST_UNKNOWN")
    assert tags_of(client, repo) == ["present"]


def test_deleted_manifest_leaves_the_referrers_list(client: httpx.Client, repo: str) -> None:
    subject = push_random_image(client, repo, "v1")
    sig = build_image(client, repo, layers=1, subject=subject.descriptor(), artifact_type="application/x-sig")
    push_manifest(client, repo, sig.digest, sig.manifest)
    assert client.delete(f"/v2/{repo}/manifests/{sig.digest}").status_code == 202
    resp = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert resp.status_code == 200
    assert resp.json()["manifests"] == []


def test_delete_blob(client: httpx.Client, repo: str) -> None:
    data = os.urandom(400)
    digest = push_blob(client, repo, data)
    assert client.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, None)
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_leaves_other_repositories_alone(client: httpx.Client, repo: str, other_repo: str) -> None:
    """The same bytes in another repository stay, and no dedupe cache resurrects the deleted one."""
    data = os.urandom(400)
    digest = push_blob(client, repo, data)
    push_blob(client, other_repo, data)
    assert client.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, None)
    assert client.get(f"/v2/{other_repo}/blobs/{digest}").content == data
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": other_repo})
    assert resp.status_code == 201, resp.text
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_delete_unknown_blob(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"makes the repository exist")
    assert_error(client.delete(f"/v2/{repo}/blobs/{digest_of(b'absent')}"), 404, "BLOB_UNKNOWN")


def test_deleted_image_can_be_pushed_again(client: httpx.Client, repo: str) -> None:
    """Deleting is not a tombstone: the same manifest pushed again is served again."""
    image = push_random_image(client, repo, "v1")
    assert client.delete(f"/v2/{repo}/manifests/{image.digest}").status_code == 202
    push_manifest(client, repo, "v1", image.manifest, OCI_MANIFEST)
    assert client.get(f"/v2/{repo}/manifests/v1").content == image.manifest


def test_delete_manifest_by_a_layers_digest_deletes_nothing(client: httpx.Client, repo: str) -> None:
    """Only manifests go through the manifests endpoint: a layer's digest there is unknown."""
    image = push_random_image(client, repo, "v1")
    layer = digest_of(image.layers[0])
    assert_error(client.delete(f"/v2/{repo}/manifests/{layer}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{repo}/blobs/{layer}").content == image.layers[0]
    assert client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200


def test_head_manifest_by_a_large_layers_digest_is_unknown(client: httpx.Client, repo: str) -> None:
    """A layer bigger than any manifest is never read whole to find out it is not one."""
    big = os.urandom(5 << 20)
    digest = push_blob(client, repo, big)
    push_random_image(client, repo, "v1")
    assert client.head(f"/v2/{repo}/manifests/{digest}").status_code == 404
