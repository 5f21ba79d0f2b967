"""More of the bad-input catalogue: documents, numbers and names read strictly, in every mode.

Each case used to answer 500, or to be accepted and read differently from how a Go client
reads it.  Each now gets the spec's status and code, and leaves what is stored as it was.
"""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    Stored,
    assert_error,
    assert_intact,
    descriptor,
    digest_of,
    open_session,
    patch_chunk,
    path_of,
)
from tests.conftest import Deployment

HUGE = "9" * 5000


def _manifest(stored: Stored) -> bytes:
    return stored.image.manifest


def _doc(stored: Stored) -> dict[str, object]:
    doc: dict[str, object] = json.loads(stored.image.manifest)
    return doc


def strict_case(stored: Stored, case: str) -> bytes:
    """A manifest body that a strict reader must refuse (or Go would read differently)."""
    body = _manifest(stored)
    doc = _doc(stored)
    config = json.dumps(doc["config"]).encode()
    layers = doc["layers"]
    assert isinstance(layers, list)
    cases = {
        "nested-1000": b"[" * 1000 + b"]" * 1000,
        "nested-in-a-field": body[:-1] + b', "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        "duplicate-key": body[:-1] + b', "config": ' + config + b"}",
        "case-variant-top": body[:-1] + b', "LAYERS": []}',
        "case-variant-descriptor": json.dumps({**doc, "layers": [{**layers[0], "Digest": digest_of(b"x")}]}).encode(),
        "layers-and-manifests": json.dumps({**doc, "manifests": []}).encode(),
        "not-utf8": body[:-1] + b', "annotations": {"a": "\xff\xfe"}}',
        "bom": b"\xef\xbb\xbf" + body,
        "utf16": body.decode().encode("utf-16"),
        "lone-surrogate": body[:-1] + b', "annotations": {"a": "\\ud800"}}',
        "nan": body[:-1] + b', "x": NaN}',
        "huge-number": body[:-1] + b', "x": ' + HUGE.encode() + b"}",
        "float-schema-version": json.dumps({**doc, "schemaVersion": 2.0}).encode(),
    }
    return cases[case]


STRICT_CASES = ["nested-1000", "nested-in-a-field", "duplicate-key", "case-variant-top", "case-variant-descriptor",
                "layers-and-manifests", "not-utf8", "bom", "utf16", "lone-surrogate", "nan", "huge-number",
                "float-schema-version"]


@pytest.mark.parametrize("case", STRICT_CASES)
def test_manifest_read_strictly(client: httpx.Client, stored: Stored, case: str) -> None:
    """400 MANIFEST_INVALID with the reason, under the live tag and by digest; nothing stored."""
    body = strict_case(stored, case)
    for ref in (stored.tag, digest_of(body)):
        resp = client.put(f"/v2/{stored.repo}/manifests/{ref}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert_error(resp, 400, "MANIFEST_INVALID")
        assert resp.json()["errors"][0]["detail"], resp.text
    assert_error(client.head(f"/v2/{stored.repo}/manifests/{digest_of(body)}"), 404, None)
    assert_intact(client, stored)


def test_index_listing_an_unparseable_child_is_served_and_harmless(client: httpx.Client, stored: Stored) -> None:
    """A deep document pushed as a blob and listed by an index: the index is stored, the blob is a
    blob, and reads of the repository (referrers walk every manifest) keep working."""
    deep = b"[" * 1000 + b"]" * 1000
    resp = client.post(f"/v2/{stored.repo}/blobs/uploads/", params={"digest": digest_of(deep)}, content=deep,
                       headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 201, resp.text
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, deep)]}).encode()
    resp = client.put(f"/v2/{stored.repo}/manifests/{digest_of(index)}", content=index,
                      headers={"Content-Type": OCI_INDEX})
    assert resp.status_code == 201, resp.text
    referrers = client.get(f"/v2/{stored.repo}/referrers/{digest_of(deep)}")
    assert referrers.status_code == 200 and referrers.json()["manifests"] == []
    assert_error(client.delete(f"/v2/{stored.repo}/manifests/{digest_of(deep)}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{stored.repo}/blobs/{digest_of(deep)}").content == deep
    assert_intact(client, stored)


@pytest.mark.parametrize(("value", "status", "whole"), [
    (f"bytes={HUGE}-", 416, False),
    (f"bytes=0-{HUGE}", 206, True),
    (f"bytes=-{HUGE}", 206, True),
    ("bytes=99999999999999999999-", 416, False),
    ("bytes=0-9223372036854775808", 206, True),
    ("bytes=²-", 200, True),
    ("bytes=0-²", 200, True),
    ("bytes=١-٢", 200, True),
])
def test_range_numbers(client: httpx.Client, stored: Stored, value: str, status: int, whole: bool) -> None:
    """Positions of any length or script answer as RFC 9110 reads them (clamped, 416, or ignored), never 500."""
    resp = client.get(f"/v2/{stored.repo}/blobs/{stored.blob_digest}", headers={"Range": value.encode()})
    assert resp.status_code == status, resp.text
    if status == 416:
        assert_error(resp, 416, None)
        assert resp.headers["Content-Range"] == f"bytes */{len(stored.blob)}"
    if whole:
        assert resp.content == stored.blob
    assert_intact(client, stored)


@pytest.mark.parametrize("value", [f"10-{HUGE}", f"{HUGE}-{HUGE}", "10-19/" + HUGE, "²-³", "١٠-١٩",
                                   "10-99999999999999999999"])
def test_content_range_numbers(client: httpx.Client, stored: Stored, value: str) -> None:
    """A Content-Range whose numbers are not bounded ASCII digits is 416, and the session keeps its bytes."""
    location = patch_chunk(client, open_session(client, stored.repo), b"0123456789", start=0).headers["Location"]
    resp = client.patch(location, content=os.urandom(10),
                        headers={"Content-Range": value.encode(), "Content-Type": "application/octet-stream"})
    assert_error(resp, 416, None)
    status = client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-9"
    assert_intact(client, stored)


@pytest.mark.parametrize("n", [HUGE, "²", "١", "-1", "1e3", " 5", "99999999999999999999"])
@pytest.mark.parametrize("listing", ["tags", "catalog"])
def test_pagination_number(client: httpx.Client, stored: Stored, n: str, listing: str) -> None:
    url = f"/v2/{stored.repo}/tags/list" if listing == "tags" else "/v2/_catalog"
    assert_error(client.get(url, params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
    assert_intact(client, stored)


def test_content_length_too_long_is_refused(client: httpx.Client, registry: Deployment, stored: Stored) -> None:
    """Refused before the body is read (by the HTTP parser, or by the app's own bound)."""
    location = open_session(client, stored.repo)
    url = urlsplit(registry.url)
    for value in (HUGE.encode(), "²".encode(), b"1" * 25):
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=30) as sock:
            sock.sendall(f"PATCH {path_of(location)} HTTP/1.1\r\nHost: x\r\nContent-Length: ".encode()
                         + value + b"\r\nConnection: close\r\n\r\nx")
            answer = sock.makefile("rb").read()
        assert answer.split()[1] == b"400", answer
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["errors"][0]["code"], answer  # in the spec's envelope, like any error
    assert client.get(location).headers["Range"] == "0-0"
    assert_intact(client, stored)


@pytest.mark.parametrize("tag", ["latest\n", "latest\r\n", "\nlatest", "latest\x00"])
def test_tag_with_a_control_character_is_refused(client: httpx.Client, stored: Stored, tag: str) -> None:
    """`?tag=latest%0A` used to store the tag "latest\\n" (re.match + $), which nothing could delete."""
    resp = client.put(f"/v2/{stored.repo}/manifests/{stored.image.digest}", params={"tag": tag},
                      content=stored.image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_intact(client, stored)


def test_digest_with_a_trailing_newline_is_invalid(client: httpx.Client, stored: Stored) -> None:
    data = os.urandom(50)
    resp = client.post(f"/v2/{stored.repo}/blobs/uploads/", params={"digest": digest_of(data) + "\n"},
                       content=data, headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{stored.repo}/blobs/{digest_of(data)}"), 404, None)
    resp = client.post(f"/v2/{stored.repo}-copy/blobs/uploads/",
                       params={"mount": stored.blob_digest + "\n", "from": stored.repo})
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_intact(client, stored)


def test_mount_from_a_name_with_a_trailing_newline_mounts_nothing(client: httpx.Client, stored: Stored) -> None:
    target = f"{stored.repo}-mounted"
    resp = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": stored.blob_digest, "from": stored.repo + "\n"})
    assert resp.status_code == 202, resp.text  # a fresh session, as for any mount that cannot be done
    assert_error(client.head(f"/v2/{target}/blobs/{stored.blob_digest}"), 404, None)
    assert_intact(client, stored)


@pytest.mark.parametrize("ref", ["-bad", ".bad", "a" * 129, "bad%21tag", "bad%0A"])
def test_invalid_tag_reads_are_manifest_unknown(client: httpx.Client, stored: Stored, ref: str) -> None:
    """GET and HEAD of a reference that is neither a tag nor a digest: 404 MANIFEST_UNKNOWN
    (distribution-spec conformance v1.1.1); a PUT of one stays 400."""
    assert_error(client.get(f"/v2/{stored.repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.head(f"/v2/{stored.repo}/manifests/{ref}"), 404, None)
    resp = client.put(f"/v2/{stored.repo}/manifests/{ref}", content=stored.image.manifest,
                      headers={"Content-Type": OCI_MANIFEST})
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_intact(client, stored)
