"""Request bodies reach storage whole however the client sends them: after an interim
`100 Continue`, in many small writes, or in one large one (the protocol hands the app the
pieces the parser cut, see ocistore_api/request_body.py).

Raw sockets, so the test controls exactly when each byte is sent.
"""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.api.helpers import digest_of, login_lines
from tests.conftest import Deployment


def _head(sock: socket.socket) -> bytes:
    """Read one response head (through its blank line); the test's responses have no body."""
    head = b""
    while b"\r\n\r\n" not in head:
        piece = sock.recv(1)
        if not piece:
            raise ConnectionError(f"closed after {head!r}")
        head += piece
    return head


def _post(registry: Deployment, repo: str, digest: str, length: int, extra: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = (f"POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {length}\r\nContent-Type: application/octet-stream\r\n{extra}")
    sock.sendall(head.encode() + login_lines(registry.url) + b"\r\n")
    return sock


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(
    registry: Deployment, client: httpx.Client, repo: str
) -> None:
    data = os.urandom(3 << 20)
    digest = digest_of(data)
    with _post(registry, repo, digest, len(data), "Expect: 100-continue\r\n") as sock:
        interim = _head(sock)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(data)
        final = _head(sock)
    assert final.startswith(b"HTTP/1.1 201 "), final
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data


@pytest.mark.parametrize("piece", [1, 997, 300_000])
def test_a_body_arrives_whole_whatever_its_writes(
    registry: Deployment, client: httpx.Client, repo: str, piece: int
) -> None:
    data = os.urandom(20_000 if piece == 1 else 2_000_000)
    digest = digest_of(data)
    with _post(registry, repo, digest, len(data)) as sock:
        for start in range(0, len(data), piece):
            sock.sendall(data[start:start + piece])
        final = _head(sock)
    assert final.startswith(b"HTTP/1.1 201 "), final
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
