"""Bounded connections: heads capped (431), slow heads and stalled bodies timed out, idle
connections evicted before they use up file descriptors, a fresh client always served.

Raw sockets throughout: these are the framing attacks a real client library never makes.
Every wait polls a condition against a deadline; the configured timeouts are short so
the suite is quick, and the bounds asserted are generous for a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import digest_of, login_lines, open_session, path_of, push_blob
from tests.conftest import Deployment
from tests.servers import OcistoreServer, wait_until

TIMEOUT = 1.0  # header, body-idle, write and keep-alive timeouts of the `limited` server
FRESH_BOUND = 1.0  # the bound for a fresh client's GET /v2/ under attack
NOFILE = 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    """A server with 1 s timeouts and 3 requests per connection."""
    server = OcistoreServer(tmp_path_factory.mktemp("limited"), extra={"http": {
        "readTimeout": "1s", "writeTimeout": "1s", "keepAliveTimeout": "1s", "maxRequestsPerConnection": 3,
    }}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    """A server of default limits (a 10 s header timeout) given only 1,024 file descriptors."""
    # This process holds 1,500 sockets at once below.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    server = OcistoreServer(tmp_path_factory.mktemp("crowded"), nofile=NOFILE).start()
    try:
        yield server
    finally:
        server.stop()


def connect(server: Deployment, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the server closes (a reset after an answer counts as the close)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(1 << 16):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def closed_by_server(sock: socket.socket) -> bool:
    """True once the peer has closed: readable, and a read returns EOF (or an answer then EOF)."""
    if not readable(sock, 0):
        return False
    try:
        sock.setblocking(False)
        while chunk := sock.recv(1 << 16):
            del chunk
        return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def readable(sock: socket.socket, timeout: float) -> bool:
    """poll(), not select(): these descriptors go past 1,024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def envelope_of(answer: bytes) -> dict[str, object]:
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert isinstance(body, dict)
    return body


def fresh_get(server: Deployment) -> float:
    """Seconds a brand-new client takes to get 200 from GET /v2/."""
    start = time.monotonic()
    with httpx.Client(timeout=10.0) as c:
        assert c.get(f"{server.url}/v2/").status_code == 200
    return time.monotonic() - start


HEAD = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def head_of(registry: Deployment) -> bytes:
    """The probe's head, logged in where the deployment needs it."""
    return HEAD + login_lines(registry.url)


# --- header size and count, in every deployment mode (default limits: 64 KiB, 100 fields)

def test_an_oversized_header_is_refused_431_and_others_are_still_served(registry: Deployment) -> None:
    with connect(registry) as sock:
        sock.sendall(HEAD + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = read_all(sock)
    assert status_of(answer) == 431
    assert envelope_of(answer)["errors"] == [
        {"code": "UNKNOWN", "message": "request head larger than 65536 bytes", "detail": None}]
    assert b"connection: close" in answer.lower()
    assert fresh_get(registry) < 10


def test_a_head_just_within_the_limit_is_served(registry: Deployment) -> None:
    with connect(registry) as sock:
        sock.sendall(head_of(registry) + b"X-Big: " + b"a" * 60_000 + b"\r\nConnection: close\r\n\r\n")
        assert status_of(read_all(sock)) == 200


def test_too_many_header_fields_are_refused_431(registry: Deployment) -> None:
    with connect(registry) as sock:
        sock.sendall(HEAD + b"".join(b"X-F%d: 1\r\n" % i for i in range(150)) + b"\r\n")
        answer = read_all(sock)
    assert status_of(answer) == 431
    assert "header fields" in str(envelope_of(answer)["errors"])
    with connect(registry) as sock:  # 90 fields are fine
        fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(90))
        sock.sendall(head_of(registry) + fields + b"Connection: close\r\n\r\n")
        assert status_of(read_all(sock)) == 200


# --- timeouts

def test_a_slow_head_is_closed_after_the_header_timeout(limited: OcistoreServer) -> None:
    """Slowloris: a byte every 0.2 s never completes the head; the server ends it at ~1 s."""
    with connect(limited) as sock:
        start = time.monotonic()
        sock.sendall(HEAD)
        deadline = start + 10
        answer = b""
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X")
            except OSError:
                break
            if readable(sock, 0.2):
                answer = read_all(sock)
                break
        elapsed = time.monotonic() - start
    assert status_of(answer) == 408, answer
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 4, elapsed


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(limited: OcistoreServer) -> None:
    with connect(limited) as sock:
        start = time.monotonic()
        closed_at = wait_until(lambda: closed_by_server(sock), timeout=10, interval=0.05)
    assert closed_at is not None
    assert TIMEOUT * 0.9 <= time.monotonic() - start < TIMEOUT + 4


def test_a_stalled_patch_is_aborted_and_the_session_keeps_what_arrived(limited: OcistoreServer) -> None:
    with httpx.Client(base_url=limited.url, timeout=30.0) as client:
        location = open_session(client, "test/stalled")
        data = os.urandom(300_000)
        with connect(limited) as sock:
            start = time.monotonic()
            sock.sendall(f"PATCH {path_of(location)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
                         "Content-Type: application/octet-stream\r\n\r\n".encode() + data[:120_000])
            answer = read_all(sock)
            elapsed = time.monotonic() - start
        assert status_of(answer) == 408, answer[:300]
        assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 4, elapsed
        assert wait_until(lambda: client.get(location).headers.get("Range") == "0-119999", timeout=10)
        # The client resumes from what the server kept, and the blob completes.
        resumed = client.patch(location, content=data[120_000:],
                               headers={"Content-Range": f"120000-{len(data) - 1}"})
        assert resumed.status_code == 202, resumed.text
        done = client.put(location, params={"digest": digest_of(data)})
        assert done.status_code == 201, done.text


def test_a_body_that_keeps_flowing_is_never_cut(limited: OcistoreServer) -> None:
    """The body timeout is about gaps: a 3 s upload in small steps outlives a 1 s timeout."""
    with httpx.Client(base_url=limited.url, timeout=30.0) as client:
        location = open_session(client, "test/flowing")
        data = os.urandom(30 * 4096)
        with connect(limited) as sock:
            sock.sendall(f"PATCH {path_of(location)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
                         "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode())
            for i in range(30):
                sock.sendall(data[i * 4096:(i + 1) * 4096])
                time.sleep(0.1)  # pacing the sender, not synchronising with the server
            assert status_of(read_all(sock)) == 202
        assert client.get(location).headers["Range"] == f"0-{len(data) - 1}"


def test_an_idle_keep_alive_connection_is_closed(limited: OcistoreServer) -> None:
    with connect(limited) as sock:
        sock.sendall(HEAD + b"\r\n")
        sock.settimeout(10)
        assert status_of(sock.recv(1 << 16)) == 200
        start = time.monotonic()
        assert wait_until(lambda: closed_by_server(sock), timeout=10, interval=0.05) is not None
    assert time.monotonic() - start < TIMEOUT + 4


def test_a_connection_serves_at_most_the_configured_number_of_requests(limited: OcistoreServer) -> None:
    with connect(limited) as sock:
        sock.sendall((HEAD + b"\r\n") * 3)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 200 ") == 3
    assert answer.lower().count(b"connection: close") == 1  # on the third answer, which ends it


def test_a_response_the_client_does_not_read_is_aborted(limited: OcistoreServer) -> None:
    with httpx.Client(base_url=limited.url, timeout=60.0) as client:
        data = os.urandom(48 << 20)
        digest = push_blob(client, "test/unread", data)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        sock.connect(("127.0.0.1", limited.port))
        sock.sendall(f"GET /v2/test/unread/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        # Not reading: the server's buffers fill, its write stalls, and it gives up after ~1 s.
        assert wait_until(lambda: "client read nothing" in limited.log(), timeout=15) is not None
        received = len(read_all(sock))
    assert received < len(data)


# --- the acceptance bound: idle sockets and huge heads do not lock a fresh client out

def test_1500_idle_sockets_under_1024_descriptors_leave_fresh_clients_served(crowded: OcistoreServer) -> None:
    socks: list[socket.socket] = []
    start = time.monotonic()
    try:
        for _ in range(1500):
            socks.append(connect(crowded))
        times = [fresh_get(crowded) for _ in range(5)]
        assert max(times) < FRESH_BOUND, times
        # The oldest idle ones made room (long before their 10 s header timeout), so the server
        # never ran out of descriptors, which would have made libuv drop pending connections.
        assert "at most 512 connections; 1024 file descriptors" in crowded.log()
        assert wait_until(lambda: sum(closed_by_server(s) for s in socks[:900]) == 900, timeout=5, interval=0.1)
        assert time.monotonic() - start < 9
        assert "closing the oldest idle ones" in crowded.log()
        assert not any(closed_by_server(s) for s in socks[-400:])  # the newest are still open
    finally:
        for s in socks:
            s.close()
    print(f"fresh GET /v2/ under 1,500 idle sockets: max {max(times) * 1000:.0f} ms")


@pytest.mark.parametrize("pace", ["at-once", "slowly"])
def test_a_48_mib_header_does_not_stall_other_clients(crowded: OcistoreServer, pace: str) -> None:
    sock = connect(crowded, timeout=30)
    head = HEAD + b"X-Big: " + b"a" * (48 << 20) + b"\r\n\r\n"
    sent = [0]

    def send() -> None:
        try:
            if pace == "at-once":
                sock.sendall(head)
                sent[0] = len(head)
            else:
                for i in range(0, len(head), 8192):
                    sock.sendall(head[i:i + 8192])
                    sent[0] = i + 8192
                    time.sleep(0.01)  # pacing the sender
        except OSError:
            pass

    sender = threading.Thread(target=send)
    with sock:
        sender.start()
        times = [fresh_get(crowded) for _ in range(5)]
        answer = read_all(sock, timeout=30)
        sender.join(60)
    assert max(times) < FRESH_BOUND, times
    assert status_of(answer) == 431
    if pace == "slowly":  # refused once the head passed 64 KiB, long before 48 MiB
        assert sent[0] < 8 << 20, sent[0]
    print(f"fresh GET /v2/ beside a 48 MiB header ({pace}): max {max(times) * 1000:.0f} ms")


# --- the cap: all connections busy -> 503; idle ones are evicted first

@pytest.fixture
def capped(tmp_path: Path) -> Iterator[OcistoreServer]:
    server = OcistoreServer(tmp_path, extra={"http": {"maxConnections": 4, "bodyIdleTimeout": "30s"}}).start()
    try:
        yield server
    finally:
        server.stop()


def test_past_the_cap_idle_connections_are_evicted_then_busy_ones_answer_503(capped: OcistoreServer) -> None:
    idle = [connect(capped) for _ in range(4)]
    try:
        assert fresh_get(capped) < 10  # room was made by closing the oldest idle connection
        assert wait_until(lambda: closed_by_server(idle[0]), timeout=10, interval=0.05) is not None
    finally:
        for s in idle:
            s.close()
    with httpx.Client(base_url=capped.url, timeout=30.0) as client:
        locations = [open_session(client, "test/busy") for _ in range(4)]
    busy = []
    try:
        for location in locations:  # four uploads in progress, each waiting for the rest of its body
            sock = connect(capped)
            sock.sendall(f"PATCH {path_of(location)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
                         "Content-Type: application/octet-stream\r\n\r\n".encode() + b"x" * 10)
            busy.append(sock)
        # Each counts once the server has parsed its head: poll until a newcomer is refused.
        answers: list[bytes] = []

        def refused() -> bool:
            with connect(capped) as sock:
                sock.sendall(HEAD + b"Connection: close\r\n\r\n")
                answers.append(read_all(sock, timeout=10))
            return status_of(answers[-1]) == 503

        assert wait_until(refused, timeout=10, interval=0.1) is not None
        assert "too many connections" in str(envelope_of(answers[-1])["errors"])
    finally:
        for s in busy:
            s.close()
    assert wait_until(lambda: _answers(capped), timeout=10) is not None  # the slots free up again


def _answers(server: OcistoreServer) -> bool:
    try:
        return fresh_get(server) < 10
    except (httpx.TransportError, AssertionError):
        return False
