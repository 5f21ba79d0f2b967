"""Two PATCHes to one upload session at once, over raw sockets so their bodies interleave on
the wire, in every deployment mode (in the topology they may reach different replicas).

Whatever the order, the session holds one request's bytes after another's, never a mix,
and a blob is committed only under the digest of the bytes actually stored.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.helpers import digest_of, login_headers, open_session, path_of, push_blob
from tests.conftest import Deployment

CHUNK = 4 << 10
CHUNKS = 8


class RawPatch:
    """A PATCH with a chunked body, sent piece by piece under the test's control."""

    def __init__(self, base_url: str, location: str, content_range: str | None) -> None:
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=60)
        headers = [f"PATCH {path_of(location)} HTTP/1.1", f"Host: {url.hostname}:{url.port}",
                   "Content-Type: application/octet-stream", "Transfer-Encoding: chunked",
                   *(f"{k}: {v}" for k, v in login_headers(base_url).items())]
        if content_range:
            headers.append(f"Content-Range: {content_range}")
        self.sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def finish(self) -> int:
        """End the body; the status of the answer."""
        self.sock.sendall(b"0\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            more = self.sock.recv(4096)
            assert more, "connection closed without an answer"
            head += more
        self.sock.close()
        return int(head.split(b" ", 2)[1])


def race(registry: Deployment, location: str, bodies: tuple[bytes, bytes], ranged: bool) -> list[int]:
    """Send both bodies chunk by chunk, alternating between the two connections."""
    patches = [RawPatch(registry.url, location, f"0-{len(b) - 1}" if ranged else None) for b in bodies]
    for i in range(CHUNKS):
        for patch, body in zip(patches, bodies, strict=True):
            patch.send(body[i * CHUNK:(i + 1) * CHUNK])
    return [p.finish() for p in patches]


def stored_length(client: httpx.Client, location: str) -> int:
    resp = client.get(path_of(location))
    assert resp.status_code == 204, resp.text
    return int(resp.headers["Range"].rsplit("-", 1)[1]) + 1


def bodies() -> tuple[bytes, bytes]:
    return os.urandom(CHUNK * CHUNKS), os.urandom(CHUNK * CHUNKS)


def commit(client: httpx.Client, location: str, data: bytes) -> httpx.Response:
    return client.put(path_of(location), params={"digest": digest_of(data)})


def test_two_ranged_patches_at_once_one_wins_and_the_blob_is_its_bytes(
        registry: Deployment, client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    a, b = bodies()
    statuses = race(registry, location, (a, b), ranged=True)
    assert sorted(statuses) == [202, 416], statuses
    winner = a if statuses[0] == 202 else b
    assert stored_length(client, location) == len(winner)
    resp = commit(client, location, winner)
    assert resp.status_code == 201, resp.text
    assert client.get(f"/v2/{repo}/blobs/{digest_of(winner)}").content == winner


def test_two_streamed_patches_at_once_land_one_after_the_other(
        registry: Deployment, client: httpx.Client, repo: str) -> None:
    """A streamed PATCH appends wherever the session ends, so both may be accepted: one after
    the other, in the order they answered (the session's writer holds it for a whole request)."""
    location = open_session(client, repo)
    a, b = bodies()
    statuses = race(registry, location, (a, b), ranged=False)
    assert set(statuses) <= {202, 416} and 202 in statuses, statuses
    stored = b"".join(body for body, status in zip((a, b), statuses, strict=True) if status == 202)
    assert stored_length(client, location) == len(stored)
    resp = commit(client, location, stored)
    assert resp.status_code == 201, f"the session's bytes are not {statuses} in order: {resp.text}"
    assert client.get(f"/v2/{repo}/blobs/{digest_of(stored)}").content == stored


@pytest.mark.parametrize("ranged", [True, False], ids=["ranged", "streamed"])
def test_a_race_aimed_at_a_known_layer_cannot_poison_it(
        registry: Deployment, client: httpx.Client, repo: str, other_repo: str, ranged: bool) -> None:
    """The attack: race the halves of a well-known layer against garbage, then claim the layer's
    digest. The claim succeeds only if the bytes are the layer's; an honest push elsewhere
    reads back exact either way."""
    layer = os.urandom(2 * CHUNK * CHUNKS)
    half = CHUNK * CHUNKS
    location = open_session(client, repo)
    race(registry, location, (layer[:half], os.urandom(half)), ranged=ranged)
    claim = commit(client, location, layer)
    if claim.status_code == 201:
        assert client.get(f"/v2/{repo}/blobs/{digest_of(layer)}").content == layer
    else:
        assert claim.status_code in (400, 416), claim.text
    push_blob(client, other_repo, layer)
    assert client.get(f"/v2/{other_repo}/blobs/{digest_of(layer)}").content == layer
