"""A 2 GiB blob in and out of ocistore without the server holding it in memory.

Layers of this size are ordinary (CUDA, model weights); a registry that buffers a request or a
response body runs out of memory under them.  The client streams a generated body (a repeated
random 1 MiB pattern, never held whole either), checks the digest of what comes back while
reading it, and a thread samples the server's RSS throughout.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from types import TracebackType

import httpx
import pytest

from tests.e2e.conftest import ServerPool
from tests.servers import OcistoreServer

MiB = 1024 * 1024
BLOB_SIZE = 2048 * MiB
CHUNK_SIZE = 64 * MiB
RSS_LIMIT_KIB = 150 * 1024
REPO = "big/weights"
PATTERN = random.Random(2024).randbytes(MiB)


def stream(size: int) -> Iterator[bytes]:
    """`size` bytes of the repeated pattern, one MiB at a time."""
    for _ in range(size // MiB):
        yield PATTERN


def blob_digest() -> str:
    digest = hashlib.sha256()
    for piece in stream(BLOB_SIZE):
        digest.update(piece)
    return "sha256:" + digest.hexdigest()


class PeakRss:
    """Samples the server's resident memory every 20 ms while the block runs; keeps the peak."""

    def __init__(self, server: OcistoreServer) -> None:
        self.server = server
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, self.server.rss_kib())
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def digest() -> str:
    return blob_digest()


@pytest.fixture
def big_server(servers: ServerPool) -> OcistoreServer:
    """A server of its own, whose gigabytes the pool deletes after the test."""
    return servers.new().start()


@pytest.fixture
def http(big_server: OcistoreServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=big_server.url, timeout=httpx.Timeout(900.0)) as c:
        yield c


def start_upload(http: httpx.Client) -> str:
    response = http.post(f"/v2/{REPO}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def finish_url(location: str, digest: str) -> httpx.URL:
    """The upload's Location plus ?digest=, keeping whatever query the registry put in it."""
    return httpx.URL(location).copy_merge_params({"digest": digest})


def pull_and_check(http: httpx.Client, server: OcistoreServer, digest: str) -> None:
    """Stream the blob back, hashing as it comes: the registry serves the very bytes pushed."""
    assert (server.root / REPO / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat().st_size == BLOB_SIZE
    received = hashlib.sha256()
    size = 0
    with PeakRss(server) as rss, http.stream("GET", f"/v2/{REPO}/blobs/{digest}") as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == BLOB_SIZE
        for piece in response.iter_bytes(MiB):
            received.update(piece)
            size += len(piece)
    assert size == BLOB_SIZE
    assert "sha256:" + received.hexdigest() == digest
    assert rss.peak_kib < RSS_LIMIT_KIB, f"server RSS peaked at {rss.peak_kib} KiB while serving 2 GiB"


def test_chunked_upload_of_2_gib(big_server: OcistoreServer, http: httpx.Client, digest: str) -> None:
    """32 PATCHes of 64 MiB, each acknowledged with the range received so far, then the closing PUT."""
    location = start_upload(http)
    with PeakRss(big_server) as rss:
        for offset in range(0, BLOB_SIZE, CHUNK_SIZE):
            end = offset + CHUNK_SIZE - 1
            response = http.patch(location, content=stream(CHUNK_SIZE), headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(CHUNK_SIZE),
                "Content-Range": f"{offset}-{end}",
            })
            assert response.status_code == 202, response.text
            assert response.headers["Range"] == f"0-{end}"
            location = response.headers["Location"]
        done = http.put(finish_url(location, digest))
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    assert rss.peak_kib < RSS_LIMIT_KIB, f"server RSS peaked at {rss.peak_kib} KiB while receiving 2 GiB"

    pull_and_check(http, big_server, digest)


def test_monolithic_upload_of_2_gib(big_server: OcistoreServer, http: httpx.Client, digest: str) -> None:
    """The monolithic upload: POST, then a single streamed PUT carrying the whole 2 GiB body."""
    location = start_upload(http)
    with PeakRss(big_server) as rss:
        done = http.put(finish_url(location, digest), content=stream(BLOB_SIZE), headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(BLOB_SIZE),
        })
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    assert rss.peak_kib < RSS_LIMIT_KIB, f"server RSS peaked at {rss.peak_kib} KiB while receiving 2 GiB"

    pull_and_check(http, big_server, digest)
