"""Pulls sent from file to socket by the kernel: the same bytes, headers and connection
behaviour as a streamed body, whatever the client does.

Raw sockets, so the test sees exactly what is on the wire and can read slowly, stop, or hang
up; every wait polls a condition against a deadline.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import push_blob
from tests.servers import OcistoreServer, wait_until

SIZE = 64 << 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OcistoreServer, bytes, str]]:
    server = OcistoreServer(tmp_path_factory.mktemp("sendfile"), extra={"http": {"writeTimeout": "2s"}}).start()
    data = os.urandom(SIZE)
    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        digest = push_blob(client, "zero/copy", data)
    try:
        yield server, data, digest
    finally:
        server.stop()


def _request(digest: str, extra: str = "") -> bytes:
    return f"GET /v2/zero/copy/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


class Reader:
    """An HTTP/1.1 response reader over one socket (Content-Length bodies only)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buffer += chunk

    def response(self, pace: float = 0.0) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            if pace:
                time.sleep(pace)  # a slow client: the server must wait for it, not give up
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body


def _connect(server: OcistoreServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def test_a_large_pull_arrives_whole_and_the_connection_goes_on(served: tuple[OcistoreServer, bytes, str]) -> None:
    server, data, digest = served
    with _connect(server) as sock:
        reader = Reader(sock)
        for _ in range(3):  # keep-alive: several pulls on one connection
            sock.sendall(_request(digest))
            status, headers, body = reader.response()
            assert status == 200 and headers["docker-content-digest"] == digest
            assert hashlib.sha256(body).hexdigest() == digest.split(":")[1] and body == data
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert reader.response()[0] == 200
    # The pulls went by descriptor (the driver's `open`), not by streamed reads.
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    opened = [line for line in metrics.splitlines()
              if line.startswith("ocistore_storage_operation_seconds_count") and 'operation="open"' in line]
    assert opened and float(opened[0].split()[-1]) >= 3, opened


@pytest.mark.parametrize("first,last", [(0, 0), (1, 1 << 20), (SIZE - 1, SIZE - 1), (12345, SIZE - 1)])
def test_ranges_are_sent_exactly(served: tuple[OcistoreServer, bytes, str], first: int, last: int) -> None:
    server, data, digest = served
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(_request(digest, f"Range: bytes={first}-{last}\r\n"))
        status, headers, body = reader.response()
        assert status == 206 and headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
        assert body == data[first:last + 1]


def test_pipelined_pulls_are_answered_in_order(served: tuple[OcistoreServer, bytes, str]) -> None:
    server, data, digest = served
    with _connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(_request(digest, "Range: bytes=0-9\r\n") + _request(digest, "Range: bytes=10-19\r\n"))
        assert reader.response()[2] == data[:10]
        assert reader.response()[2] == data[10:20]


def test_a_slow_reader_gets_every_byte(served: tuple[OcistoreServer, bytes, str]) -> None:
    server, data, digest = served
    with _connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(_request(digest, "Range: bytes=0-8388607\r\n"))
        _, _, body = Reader(sock).response(pace=0.002)
        assert body == data[:8 << 20]


def _open_fds(server: OcistoreServer) -> int:
    assert server.proc is not None
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def test_clients_that_hang_up_mid_body_leave_nothing_open(served: tuple[OcistoreServer, bytes, str]) -> None:
    server, _, digest = served
    before = _open_fds(server)
    for _ in range(10):
        with _connect(server) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            sock.sendall(_request(digest))
            sock.recv(1 << 16)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
    assert wait_until(lambda: _open_fds(server) <= before, timeout=20) is not None, (before, _open_fds(server))
    assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200


def test_a_blob_deleted_during_its_pull_is_still_sent_whole(tmp_path: Path) -> None:
    server = OcistoreServer(tmp_path).start()
    try:
        data = os.urandom(32 << 20)
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            digest = push_blob(client, "zero/deleted", data)
        with _connect(server) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            sock.sendall(f"GET /v2/zero/deleted/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reader = Reader(sock)
            while b"\r\n\r\n" not in reader.buffer:
                reader._fill()
            blob = server.repo_path("zero/deleted") / "blobs" / "sha256" / digest.split(":")[1]
            blob.unlink()  # as GC would
            _, _, body = reader.response()
        assert body == data
    finally:
        server.stop()
