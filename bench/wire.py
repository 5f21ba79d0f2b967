"""The Distribution API calls the workloads make, on the one HTTP client both registries share.

Every workload talks to a registry only through `Registry`, so the peer and ocistore see byte for
byte the same requests and the client's own cost is the same on both sides. Bodies come from bytes
prepared before the timed loops. Wire anomalies that do not stop a workload (a missing or wrong
header) are collected in `Registry.notes` so the report can list them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from http1 import Client, Response, Streamed

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
STREAM_PIECE = 1 << 20
MAX_PAGES = 10_000
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_OCTETS = {"Content-Type": "application/octet-stream"}


class WireError(Exception):
    """A registry answered with a status the workload cannot go on from."""


@dataclass(frozen=True)
class Blob:
    """A blob's identity; the body itself is produced by whoever pushes it."""

    digest: str
    size: int


@dataclass
class Registry:
    """A registry reached through a pooled `Client`."""

    http: Client
    notes: set[str] = field(default_factory=set)

    async def ping(self) -> None:
        """Check `GET /v2/` so a workload never starts against a registry that is not serving."""
        _expect(await self.http.request("GET", "/v2/"), 200, "GET /v2/")

    async def start_upload(self, repo: str) -> str:
        """Open an upload session; returns its Location as given (absolute or relative)."""
        resp = await self.http.request("POST", f"/v2/{repo}/blobs/uploads/")
        _expect(resp, 202, f"POST /v2/{repo}/blobs/uploads/")
        return _location(resp, "upload POST")

    async def finish_upload(self, location: str, blob: Blob, body: bytes | Streamed = b"") -> None:
        """Close a session with `PUT ?digest=`, sending `body` as the last (or only) chunk."""
        sep = "&" if "?" in location else "?"
        resp = await self.http.request("PUT", f"{location}{sep}digest={blob.digest}", _OCTETS, body)
        _expect(resp, 201, f"PUT {location}")
        self._check(resp, "docker-content-digest", blob.digest, "blob PUT")
        landed = urlsplit(_location(resp, "blob PUT")).path
        if landed != f"/v2/{_repo_of(location)}/blobs/{blob.digest}":
            self.notes.add(f"blob PUT: Location {landed!r} is not the blob's URL")

    async def push_blob(self, repo: str, blob: Blob, body: bytes) -> None:
        """Push a small blob the way clients do: POST a session, then PUT it whole with its digest."""
        await self.finish_upload(await self.start_upload(repo), blob, body)

    async def mount_blob(self, repo: str, blob: Blob, source: str) -> None:
        """Mount `blob` from repository `source` (one POST; 201 when the registry mounted it)."""
        target = f"/v2/{repo}/blobs/uploads/?mount={blob.digest}&from={source}"
        _expect(await self.http.request("POST", target), 201, f"POST {target}")

    async def push_streamed(self, repo: str, blob: Blob, pieces: Iterable[bytes]) -> None:
        """POST + PUT of a large blob whose body is streamed from `pieces` (never held whole)."""
        location = await self.start_upload(repo)
        await self.finish_upload(location, blob, Streamed(pieces, blob.size))

    async def push_chunked(self, repo: str, blob: Blob, chunk: bytes) -> None:
        """Push `blob` as consecutive PATCHes of `chunk` (with Content-Range), then an empty PUT."""
        location = await self.start_upload(repo)
        for start in range(0, blob.size, len(chunk)):
            location = await self._patch(location, chunk, start)
        await self.finish_upload(location, blob)

    async def _patch(self, location: str, chunk: bytes, start: int) -> str:
        """Send one chunk at `start`; returns the Location to use next."""
        end = start + len(chunk) - 1
        headers = {**_OCTETS, "Content-Range": f"{start}-{end}"}
        resp = await self.http.request("PATCH", location, headers, chunk)
        _expect(resp, 202, f"PATCH {location}")
        self._check(resp, "range", f"0-{end}", "PATCH")
        return _location(resp, "PATCH")

    async def pull_blob(self, repo: str, blob: Blob) -> None:
        """GET a blob, hashing it as it arrives, and fail unless size and sha256 match."""
        sink = _HashSink()
        resp = await self.http.request("GET", f"/v2/{repo}/blobs/{blob.digest}", sink=sink)
        _expect(resp, 200, f"GET blob {blob.digest}")
        self._check(resp, "docker-content-digest", blob.digest, "blob GET")
        got = f"sha256:{sink.hasher.hexdigest()}"
        if sink.size != blob.size or got != blob.digest:
            raise WireError(f"pulled {sink.size} bytes hashing to {got}, expected {blob.size} of {blob.digest}")

    async def head_blob(self, repo: str, blob: Blob) -> None:
        """HEAD a blob and check the headers a client relies on."""
        resp = await self.http.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")
        _expect(resp, 200, f"HEAD blob {blob.digest}")
        self._check(resp, "content-length", str(blob.size), "blob HEAD")
        self._check(resp, "docker-content-digest", blob.digest, "blob HEAD")

    async def put_manifest(self, repo: str, ref: str, body: bytes) -> None:
        """PUT an OCI image manifest under a tag or digest and check the digest it is given."""
        resp = await self.http.request("PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": OCI_MANIFEST},
                                       body)
        _expect(resp, 201, f"PUT manifest {repo}:{ref}")
        self._check(resp, "docker-content-digest", sha256_digest(body), "manifest PUT")

    async def get_manifest(self, repo: str, ref: str) -> bytes:
        """GET a manifest by tag or digest, asking for the OCI media type."""
        resp = await self.http.request("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": OCI_MANIFEST})
        _expect(resp, 200, f"GET manifest {repo}:{ref}")
        self._check(resp, "content-type", OCI_MANIFEST, "manifest GET")
        self._check(resp, "docker-content-digest", sha256_digest(resp.body), "manifest GET")
        return resp.body

    async def list_all(self, target: str, key: str) -> tuple[list[str], int]:
        """Read a paginated list (tags or catalog) to its end by following `Link: rel="next"`.

        Returns the entries and the number of pages read; MAX_PAGES stops a registry whose Link
        points back at the same page.
        """
        entries: list[str] = []
        for pages in range(1, MAX_PAGES + 1):
            resp = await self.http.request("GET", target)
            _expect(resp, 200, f"GET {target}")
            entries.extend(json.loads(resp.body).get(key) or [])
            link = _LINK_NEXT.search(resp.headers.get("link", ""))
            if link is None:
                return entries, pages
            target = link.group(1)
        raise WireError(f"{target}: still linking to a next page after {MAX_PAGES} pages")

    def _check(self, resp: Response, header: str, expected: str, what: str) -> None:
        """Note (once per kind) a header that is missing or differs from what the spec requires."""
        got = resp.headers.get(header)
        if got is None:
            self.notes.add(f"{what}: no {header} header (expected {expected!r})")
        elif got.split(";")[0].strip() != expected:
            self.notes.add(f"{what}: {header} is {got!r}, expected {expected!r}")


class _HashSink:
    """Receives a streamed body piece by piece, hashing and counting it."""

    def __init__(self) -> None:
        """A fresh sha256 and a zero count."""
        self.hasher = hashlib.sha256()
        self.size = 0

    def __call__(self, piece: bytes) -> None:
        """Take one piece of the body."""
        self.hasher.update(piece)
        self.size += len(piece)


def sha256_digest(data: bytes) -> str:
    """The OCI digest string of `data`."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _repo_of(location: str) -> str:
    """The repository named in an upload session URL (absolute or relative)."""
    path = urlsplit(location).path
    return path[len("/v2/"):path.index("/blobs/uploads/")]


def _location(resp: Response, what: str) -> str:
    """The Location header, which every upload and push answer must carry."""
    location = resp.headers.get("location")
    if not location:
        raise WireError(f"{what}: {resp.status} without Location")
    return location


def _expect(resp: Response, status: int, what: str) -> None:
    """Raise `WireError` with the start of the error body unless the answer has `status`."""
    if resp.status != status:
        body = resp.body[:400].decode("utf-8", "replace")
        raise WireError(f"{what}: {resp.status} (expected {status}) {body}")
