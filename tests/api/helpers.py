"""Push helpers and assertions shared by the API suite.

Everything goes over plain HTTP, the way a registry client talks, so a helper that
passes here proves the server's answers and not some in-process shortcut.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_FOREIGN_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(media_type: str, data: bytes, algorithm: str = "sha256", **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data, algorithm), "size": len(data), **extra}


def path_of(url: str) -> str:
    """The path of a Location, which the spec lets be relative or absolute."""
    return urlsplit(url).path


def open_session(client: httpx.Client, repo: str) -> str:
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    assert resp.status_code == 202, resp.text
    return resp.headers["Location"]


def patch_chunk(client: httpx.Client, location: str, chunk: bytes, start: int | None = None) -> httpx.Response:
    """PATCH one chunk; with `start` it is a chunked upload (Content-Range), without it a streamed one."""
    headers = {"Content-Type": "application/octet-stream"}
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(chunk) - 1}"
    return client.patch(location, content=chunk, headers=headers)


def close_session(client: httpx.Client, location: str, digest: str, last_chunk: bytes = b"") -> httpx.Response:
    """PUT ?digest= on the session URL as given, keeping any query the server put in its Location."""
    url = httpx.URL(location).copy_merge_params({"digest": digest})
    return client.put(url, content=last_chunk, headers={"Content-Type": "application/octet-stream"})


def push_blob(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    """POST then PUT, the upload every registry must accept; returns the digest."""
    digest = digest_of(data, algorithm)
    resp = close_session(client, open_session(client, repo), digest, data)
    assert resp.status_code == 201, resp.text
    return digest


def push_manifest(client: httpx.Client, repo: str, ref: str, body: bytes,
                  media_type: str = OCI_MANIFEST) -> httpx.Response:
    resp = client.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
    assert resp.status_code == 201, resp.text
    return resp


def delete_manifest(client: httpx.Client, repo: str, ref: str) -> None:
    resp = client.delete(f"/v2/{repo}/manifests/{ref}")
    assert resp.status_code == 202, resp.text


@dataclass(frozen=True)
class Image:
    """A manifest and the blobs it was built from, as the client knows them."""

    config: bytes
    layers: list[bytes]
    manifest: bytes
    media_type: str
    algorithm: str = "sha256"

    @property
    def digest(self) -> str:
        return digest_of(self.manifest, self.algorithm)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return descriptor(self.media_type, self.manifest, self.algorithm, **extra)


def build_image(client: httpx.Client, repo: str, *, layers: int = 2, algorithm: str = "sha256",
                docker: bool = False, config_media_type: str | None = None, artifact_type: str | None = None,
                subject: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> Image:
    """Push random config and layer blobs and return the manifest that references them (not pushed)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    if config_media_type == OCI_EMPTY:
        config = b"{}"
    blobs = [os.urandom(64 + 37 * i) for i in range(layers)]
    for blob in (config, *blobs):
        push_blob(client, repo, blob, algorithm)
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_media_type or (DOCKER_CONFIG if docker else OCI_CONFIG), config, algorithm),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, b, algorithm) for b in blobs],
    }
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    if subject is not None:
        manifest["subject"] = subject
    if annotations is not None:
        manifest["annotations"] = annotations
    return Image(config, blobs, json.dumps(manifest).encode(), media_type, algorithm)


def push_random_image(client: httpx.Client, repo: str, tag: str | None = None, **kwargs: Any) -> Image:
    """A random image pushed whole: blobs, then the manifest by `tag`, or by digest without one."""
    image = build_image(client, repo, **kwargs)
    push_manifest(client, repo, tag or image.digest, image.manifest, image.media_type)
    return image


def push_index(client: httpx.Client, repo: str, ref: str | None, children: list[Image],
               media_type: str = OCI_INDEX) -> bytes:
    """An index (or Docker manifest list) over already pushed images; returns its bytes."""
    platforms = [{"architecture": arch, "os": "linux"} for arch in ("amd64", "arm64", "s390x", "ppc64le")]
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [c.descriptor(platform=p) for c, p in zip(children, platforms, strict=False)],
    }).encode()
    push_manifest(client, repo, ref or digest_of(body), body, media_type)
    return body


def tag_all(client: httpx.Client, repo: str, image: Image, tags: list[str]) -> None:
    for tag in tags:
        push_manifest(client, repo, tag, image.manifest, image.media_type)


def next_link(resp: httpx.Response) -> str | None:
    """The `rel="next"` target of a paginated answer, or None when it has no Link."""
    link = resp.headers.get("Link")
    if link is None:
        return None
    match = _LINK_NEXT.search(link)
    assert match, f"Link header without rel=next: {link!r}"
    return str(match.group(1))


def media_type_of(resp: httpx.Response) -> str:
    content_type: str = resp.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip()


def assert_error(resp: httpx.Response, status: int, code: str | None) -> None:
    """The spec's error answer: the status, then (unless HEAD) a JSON `errors` list naming `code`.

    `code` is None where the spec fixes only the status (416, 413).
    """
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    if resp.request.method == "HEAD":
        assert resp.content == b""
        return
    assert media_type_of(resp) == "application/json", resp.headers
    errors = resp.json()["errors"]
    assert isinstance(errors, list) and errors, resp.text
    for error in errors:
        assert {"code", "message", "detail"} <= error.keys(), error
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str)
    if code is not None:
        assert code in [e["code"] for e in errors], resp.text


def login_headers(base_url: str) -> dict[str, str]:
    """The Basic `Authorization` a base URL's user and password stand for (none without them),
    for requests sent without httpx, which reads them from the URL by itself."""
    url = urlsplit(base_url)
    if url.username is None:
        return {}
    token = base64.b64encode(f"{url.username}:{url.password or ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def login_lines(base_url: str) -> bytes:
    """The same, as header lines for a request written byte by byte on a socket."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in login_headers(base_url).items())


def raw_request(base_url: str, method: str, raw_path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> httpx.Response:
    """Send `raw_path` byte for byte (httpx would resolve `..`), answered as an httpx.Response."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    try:
        conn.request(method, raw_path, body=body, headers={**login_headers(base_url), **(headers or {})})
        answer = conn.getresponse()
        content = answer.read()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=content,
                              request=httpx.Request(method, base_url + raw_path))
    finally:
        conn.close()


@dataclass(frozen=True)
class Stored:
    """A blob and a tagged image already in a repository, to prove a failed request harmed neither."""

    repo: str
    blob: bytes
    blob_digest: str
    image: Image
    tag: str


def store_sample(client: httpx.Client, repo: str) -> Stored:
    blob = os.urandom(333)
    blob_digest = push_blob(client, repo, blob)
    return Stored(repo, blob, blob_digest, push_random_image(client, repo, "stable"), "stable")


def assert_intact(client: httpx.Client, stored: Stored) -> None:
    blob = client.get(f"/v2/{stored.repo}/blobs/{stored.blob_digest}")
    assert blob.status_code == 200 and blob.content == stored.blob
    for layer in stored.image.layers:
        assert client.get(f"/v2/{stored.repo}/blobs/{digest_of(layer)}").content == layer
    manifest = client.get(f"/v2/{stored.repo}/manifests/{stored.tag}")
    assert manifest.status_code == 200 and manifest.content == stored.image.manifest
    tags = client.get(f"/v2/{stored.repo}/tags/list")
    assert tags.status_code == 200 and tags.json()["tags"] == [stored.tag]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples]:
    """A server's /metrics: the text (for failure messages) and every sample by name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
