"""Content discovery: tag lists, the catalog and referrers, with their pagination and filters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    build_image,
    digest_of,
    media_type_of,
    next_link,
    path_of,
    push_manifest,
    push_random_image,
    tag_all,
)
from tests.servers import OcistoreServer

# Picked so that byte order differs from case-insensitive and from natural (numeric) order.
TAGS = ["v10", "v2", "latest", "B", "a-2", "a.1", "a1", "_x", "1.0", "Z"]
ORDERED = sorted(TAGS)
REPOS = ["zeta9", "beta/two", "alpha", "beta/one", "a-b", "gamma"]
SBOM = "application/vnd.example.sbom.v1+json"
SIG_CONFIG = "application/vnd.example.signature.config.v1+json"


@pytest.fixture
def tagged(client: httpx.Client, repo: str) -> Image:
    image = push_random_image(client, repo)
    tag_all(client, repo, image, TAGS)
    return image


def follow(client: httpx.Client, first: str, key: str, n: int) -> list[list[str]]:
    """Every page of a paginated list, checking each Link continues after the page's last entry."""
    pages: list[list[str]] = []
    url: str | None = first
    while url is not None:
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json()[key])
        url = next_link(resp)
        if url is not None:
            params = httpx.URL(url).params
            assert params["n"] == str(n)
            assert params["last"] == pages[-1][-1]
            assert path_of(url) == path_of(first)
        assert len(pages) <= 100, "pagination does not end"
    return pages


def test_tags_are_listed_in_lexical_order(client: httpx.Client, repo: str, tagged: Image) -> None:
    resp = client.get(f"/v2/{repo}/tags/list")
    assert resp.status_code == 200
    assert resp.json() == {"name": repo, "tags": ORDERED}
    assert next_link(resp) is None


def test_tags_pagination_follows_link(client: httpx.Client, repo: str, tagged: Image) -> None:
    """Pages of n, chained by Link, cover every tag once; the last page carries no Link."""
    pages = follow(client, f"/v2/{repo}/tags/list?n=3", "tags", 3)
    assert pages == [ORDERED[0:3], ORDERED[3:6], ORDERED[6:9], ORDERED[9:]]


@pytest.mark.parametrize(
    ("query", "expected", "more"),
    [
        (f"last={ORDERED[3]}", ORDERED[4:], False),
        ("last=a0", ["a1", "latest", "v10", "v2"], False),
        (f"n=2&last={ORDERED[3]}", ORDERED[4:6], True),
        (f"n=3&last={ORDERED[6]}", ORDERED[7:], False),
        (f"n={len(TAGS)}", ORDERED, False),
        ("n=1000", ORDERED, False),
        (f"last={ORDERED[-1]}", [], False),
    ],
    ids=["last-exclusive", "last-not-a-tag", "n-and-last", "n-equals-remaining", "n-equals-all", "n-large",
         "last-is-final"],
)
def test_tags_n_and_last(client: httpx.Client, repo: str, tagged: Image, query: str, expected: list[str],
                         more: bool) -> None:
    """`last` is exclusive, `n` caps the page, and Link appears only when tags remain."""
    resp = client.get(f"/v2/{repo}/tags/list?{query}")
    assert resp.status_code == 200
    assert resp.json()["tags"] == expected
    assert (next_link(resp) is not None) == more


def test_tags_n_zero_is_empty(client: httpx.Client, repo: str, tagged: Image) -> None:
    resp = client.get(f"/v2/{repo}/tags/list?n=0")
    assert resp.status_code == 200
    assert resp.json() == {"name": repo, "tags": []}


@pytest.fixture
def catalog(fresh_server: OcistoreServer) -> Iterator[httpx.Client]:
    """A server of its own holding exactly REPOS, so the catalog is predictable."""
    with httpx.Client(base_url=fresh_server.url, timeout=60.0) as c:
        for name in REPOS:
            push_random_image(c, name, "latest", layers=1)
        yield c


def test_catalog_of_an_empty_registry(fresh_server: OcistoreServer) -> None:
    with httpx.Client(base_url=fresh_server.url, timeout=60.0) as c:
        resp = c.get("/v2/_catalog")
    assert resp.status_code == 200
    assert resp.json() == {"repositories": []}


def test_catalog_lists_repositories_in_order(catalog: httpx.Client) -> None:
    resp = catalog.get("/v2/_catalog")
    assert resp.status_code == 200
    assert resp.json() == {"repositories": sorted(REPOS)}
    assert next_link(resp) is None


def test_catalog_pagination(catalog: httpx.Client) -> None:
    """The catalog pages exactly like tag lists: n, exclusive last, Link only while more remain."""
    ordered = sorted(REPOS)
    assert follow(catalog, "/v2/_catalog?n=4", "repositories", 4) == [ordered[:4], ordered[4:]]
    resp = catalog.get("/v2/_catalog", params={"last": ordered[1], "n": 2})
    assert resp.json()["repositories"] == ordered[2:4]
    assert next_link(resp) is not None
    resp = catalog.get("/v2/_catalog", params={"last": ordered[3], "n": 2})
    assert resp.json()["repositories"] == ordered[4:]
    assert next_link(resp) is None
    assert catalog.get("/v2/_catalog?n=0").json() == {"repositories": []}


def referrer(client: httpx.Client, repo: str, subject: dict[str, Any], **kwargs: Any) -> Image:
    image = build_image(client, repo, layers=1, subject=subject, **kwargs)
    push_manifest(client, repo, image.digest, image.manifest)
    return image


def expected_descriptor(image: Image, artifact_type: str, annotations: dict[str, str] | None) -> dict[str, Any]:
    return {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest),
            "artifactType": artifact_type, "annotations": annotations}


def listed(resp: httpx.Response) -> list[dict[str, Any]]:
    """The referrers answer as descriptors sorted by digest, checking it is an image index."""
    assert resp.status_code == 200, resp.text
    assert media_type_of(resp) == OCI_INDEX
    body = resp.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    keys = ("mediaType", "digest", "size", "artifactType", "annotations")
    return sorted(({k: d.get(k) for k in keys} for d in body["manifests"]), key=lambda d: str(d["digest"]))


@pytest.fixture
def referrers(client: httpx.Client, repo: str) -> tuple[Image, list[dict[str, Any]]]:
    """A subject with two referrers (one typed by artifactType, one by its config) and bystanders."""
    subject = push_random_image(client, repo, "v1")
    sbom_notes = {"org.example.kind": "sbom"}
    sig_notes = {"org.example.kind": "signature", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    sbom = referrer(client, repo, subject.descriptor(), config_media_type=OCI_EMPTY, artifact_type=SBOM,
                    annotations=sbom_notes)
    sig = referrer(client, repo, subject.descriptor(), config_media_type=SIG_CONFIG, annotations=sig_notes)
    other = push_random_image(client, repo, "v2")
    referrer(client, repo, other.descriptor(), artifact_type=SBOM)
    expected = [expected_descriptor(sbom, SBOM, sbom_notes), expected_descriptor(sig, SIG_CONFIG, sig_notes)]
    return subject, sorted(expected, key=lambda d: str(d["digest"]))


def test_referrers_list_by_subject(client: httpx.Client, repo: str,
                                   referrers: tuple[Image, list[dict[str, Any]]]) -> None:
    """Every manifest whose subject is the digest, with artifactType from the config when unset."""
    subject, expected = referrers
    assert listed(client.get(f"/v2/{repo}/referrers/{subject.digest}")) == expected


def test_referrers_filtered_by_artifact_type(client: httpx.Client, repo: str,
                                             referrers: tuple[Image, list[dict[str, Any]]]) -> None:
    subject, expected = referrers
    resp = client.get(f"/v2/{repo}/referrers/{subject.digest}", params={"artifactType": SBOM})
    assert listed(resp) == [d for d in expected if d["artifactType"] == SBOM]
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    resp = client.get(f"/v2/{repo}/referrers/{subject.digest}", params={"artifactType": "application/x-none"})
    assert listed(resp) == []
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"


def test_referrers_of_an_unknown_digest_is_empty(client: httpx.Client, repo: str,
                                                 referrers: tuple[Image, list[dict[str, Any]]]) -> None:
    """No referrers is an empty index, never a 404 that clients would read as 'unsupported'."""
    assert listed(client.get(f"/v2/{repo}/referrers/{digest_of(b'nothing refers to this')}")) == []


def test_referrers_of_a_subject_not_pushed(client: httpx.Client, repo: str) -> None:
    """A signature may be pushed before its image; it is listed all the same."""
    absent = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"image pushed later"), "size": 18}
    sig = referrer(client, repo, absent, artifact_type=SBOM)
    got = listed(client.get(f"/v2/{repo}/referrers/{absent['digest']}"))
    assert got == [expected_descriptor(sig, SBOM, None)]


def test_referrers_in_a_repository_that_does_not_exist_yet(client: httpx.Client, repo: str) -> None:
    """The spec: a registry with the referrers API MUST NOT answer 404 there; and asking creates nothing."""
    assert listed(client.get(f"/v2/{repo}/referrers/{digest_of(b'not pushed anywhere')}")) == []
    assert client.get(f"/v2/{repo}/tags/list").status_code == 404
    assert repo not in client.get("/v2/_catalog").json()["repositories"]


def test_referrers_keep_a_large_annotation(client: httpx.Client, repo: str) -> None:
    """Annotations too large for the memo are read again from storage, not dropped."""
    subject = push_random_image(client, repo, "v1")
    notes = {"org.example.big": "x" * (64 << 10)}
    sig = referrer(client, repo, subject.descriptor(), artifact_type=SBOM, annotations=notes)
    assert listed(client.get(f"/v2/{repo}/referrers/{subject.digest}")) == [expected_descriptor(sig, SBOM, notes)]
