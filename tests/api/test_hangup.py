"""A client that hangs up mid-body: no blob appears, and a session keeps what arrived."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import httpx

from tests.api.helpers import Stored, assert_intact, digest_of, login_lines, open_session, path_of
from tests.servers import OcistoreServer, stored_files


def send_half(registry: OcistoreServer, method: str, path: str, declared: int, sent: bytes) -> None:
    """Declare `declared` bytes, send only `sent`, then close the connection."""
    with socket.create_connection(("127.0.0.1", registry.port)) as sock:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
                "Content-Type: application/octet-stream\r\n")
        sock.sendall(head.encode() + login_lines(registry.url) + b"\r\n" + sent)
        # End the body early, then wait for the server to close its side: by then it has
        # handled the hang-up, so what the test looks at next is what the hang-up left.
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(30)
        while sock.recv(65536):
            pass


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """The server notices a hang-up a moment after the client: poll rather than race it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)


def leftover_uploads(registry: OcistoreServer, repo: str) -> list[str]:
    return [f for f in stored_files(registry.config_path, repo) if f.startswith(".uploads/")]


def test_monolithic_push_cut_short_leaves_no_blob_and_no_file(
    registry: OcistoreServer, client: httpx.Client, repo: str, stored: Stored
) -> None:
    data = os.urandom(200_000)
    digest = digest_of(data)
    send_half(registry, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", len(data), data[:70_000])
    wait_for(lambda: not leftover_uploads(registry, repo))
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert leftover_uploads(registry, repo) == []
    assert_intact(client, stored)


def test_chunk_cut_short_keeps_the_bytes_that_arrived_and_no_blob(
    registry: OcistoreServer, client: httpx.Client, repo: str
) -> None:
    data = os.urandom(300_000)
    location = open_session(client, repo)
    send_half(registry, "PATCH", path_of(location), len(data), data[:120_000])
    wait_for(lambda: client.get(location).headers.get("Range") == "0-119999")
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-119999"
    received = 120_000
    assert client.head(f"/v2/{repo}/blobs/{digest_of(data)}").status_code == 404
    # The client resumes from what the server says it has, and the blob completes.
    resumed = client.patch(location, content=data[received:],
                           headers={"Content-Range": f"{received}-{len(data) - 1}"})
    assert resumed.status_code == 202, resumed.text
    done = client.put(location, params={"digest": digest_of(data)})
    assert done.status_code == 201, done.text
    assert client.get(f"/v2/{repo}/blobs/{digest_of(data)}").content == data
