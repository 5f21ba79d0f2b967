"""What an operator reads: a JSON access line per request in zot's format, the request id,
zot's audit file, and signals that reload rather than kill."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import metric, push_random_image, scrape
from tests.servers import OcistoreServer, wait_until


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def access_lines(server: OcistoreServer) -> list[dict[str, Any]]:
    return [d for d in json_lines(server.log()) if d.get("module") == "ocistore.access"]


def test_every_request_gets_one_json_access_line_with_its_fields_and_request_id(tmp_path: Path) -> None:
    server = OcistoreServer(tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            image = push_random_image(c, "ops/app", "v1")
            got = c.get("/v2/ops/app/manifests/v1", headers={"X-Request-Id": "trace-42",
                                                             "Accept": image.media_type})
            assert got.headers["x-request-id"] == "trace-42"
            missing = c.get("/v2/ops/app/manifests/nope")
            generated = missing.headers["x-request-id"]
            assert len(generated) == 32 and generated != "trace-42"
            for bad in ("has a space", "x" * 129):  # not an id a log line can carry: replaced
                assert c.get("/v2/", headers={"X-Request-Id": bad}).headers["x-request-id"] != bad

        def logged() -> bool:
            return any(d.get("requestId") == generated for d in access_lines(server))

        assert wait_until(logged, timeout=10), server.log()[-2000:]
        lines = access_lines(server)
        pull = next(d for d in lines if d["requestId"] == "trace-42")
        assert pull["level"] == "info" and pull["time"].endswith("Z") and pull["message"]
        assert (pull["method"], pull["route"], pull["repository"], pull["reference"], pull["status"]) == (
            "GET", "/v2/{name}/manifests/{reference}", "ops/app", "v1", 200)
        assert pull["bytesOut"] == len(image.manifest) and pull["durationMs"] > 0
        assert pull["client"].startswith("127.0.0.1:")
        assert next(d for d in lines if d["requestId"] == generated)["status"] == 404
        put = [d for d in lines if d["method"] == "PUT" and d["route"] == "/v2/{name}/manifests/{reference}"]
        assert put and put[0]["bytesIn"] == len(image.manifest) and put[0]["status"] == 201
        routes = {d["route"] for d in lines}
        assert routes <= {"/v2/{name}/manifests/{reference}", "/v2/{name}/blobs/{digest}",
                          "/v2/{name}/blobs/uploads/{session}", "/v2/"}, routes
    finally:
        server.stop()


def test_the_audit_file_gets_every_mutating_request_and_no_read(tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    server = OcistoreServer(tmp_path, extra={"log": {"audit": str(audit)}}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            push_random_image(c, "ops/audited", "v1")
            assert c.get("/v2/ops/audited/tags/list").status_code == 200
            assert c.delete("/v2/ops/audited/manifests/v1").status_code == 202
        assert wait_until(lambda: audit.exists() and '"DELETE"' in audit.read_text(), timeout=10)
        lines = json_lines(audit.read_text())
        assert {d["method"] for d in lines} <= {"POST", "PUT", "PATCH", "DELETE"}
        assert any(d["method"] == "PUT" and d["reference"] == "v1" for d in lines)
        assert not any(d["route"] == "/v2/{name}/tags/list" for d in lines)
    finally:
        server.stop()


def test_sighup_changes_the_log_level_and_no_habitual_signal_kills_the_server(tmp_path: Path) -> None:
    server = OcistoreServer(tmp_path).start()
    try:
        assert server.proc is not None
        config = json.loads(server.config_path.read_text())
        config["log"] = {"level": "error"}
        server.config_path.write_text(json.dumps(config))
        os.kill(server.proc.pid, signal.SIGHUP)
        assert wait_until(lambda: "log level info -> error" in server.log(), timeout=10), server.log()[-2000:]
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            os.kill(server.proc.pid, sig)
        before = len(access_lines(server))
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for _ in range(3):
                assert c.get("/v2/").status_code == 200
        assert server.proc.poll() is None, "a signal an operator sends out of habit ended the server"
        assert len(access_lines(server)) == before, "access lines were still written at level error"
        config["log"] = {"level": "nonsense"}
        server.config_path.write_text(json.dumps(config))
        os.kill(server.proc.pid, signal.SIGHUP)
        assert wait_until(lambda: "not reloaded, the running settings stay" in server.log(), timeout=10)
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_sigterm_lets_a_request_in_flight_finish_then_stops(tmp_path: Path) -> None:
    """A rolling restart sends SIGTERM: an upload chunk half sent must still be answered."""
    import threading
    import time as clock

    from tests.api.helpers import open_session, path_of

    server = OcistoreServer(tmp_path).start()
    assert server.proc is not None
    answers: list[int] = []
    in_flight = threading.Event()

    def answering() -> bool:  # the slow PATCH, beside the scrape itself
        return metric(scrape(server.url)[1], "ocistore_http_requests_in_flight") >= 2

    def slow_body() -> Iterator[bytes]:
        yield b"x" * 4096
        # Sent is not received: a SIGTERM before the server has read the request's head finds
        # an idle connection, which a draining server closes. The request must be in flight.
        if wait_until(answering, timeout=10):
            in_flight.set()
        for _ in range(10):
            clock.sleep(0.1)  # a client on a slow link, not a synchronisation: the server must wait for it
            yield b"y" * 4096

    with httpx.Client(base_url=server.url, timeout=30) as c:
        session = path_of(open_session(c, "ops/drain"))

        def send() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as slow:
                answers.append(slow.patch(session, content=slow_body(),
                                          headers={"Content-Type": "application/octet-stream"}).status_code)

        sender = threading.Thread(target=send)
        sender.start()
        assert in_flight.wait(20), "the server never counted the PATCH in flight"
        os.kill(server.proc.pid, signal.SIGTERM)
        sender.join(20)
    assert answers == [202], answers
    assert server.proc.wait(timeout=20) == 0


def test_sighup_reloads_access_control_and_a_bad_one_keeps_the_running_rules(tmp_path: Path) -> None:
    from tests.auth.conftest import PASSWORDS, auth_http

    rules = {"repositories": {"ops/**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}]}}}
    server = OcistoreServer(tmp_path, extra={"http": auth_http(tmp_path, rules)}).start()
    try:
        assert server.proc is not None
        alice = ("alice", PASSWORDS["alice"])
        with httpx.Client(base_url=server.url, timeout=30, auth=alice) as c:
            push_random_image(c, "ops/reloaded", "v1")
            config = json.loads(server.config_path.read_text())
            config["http"]["accessControl"]["repositories"]["ops/**"]["policies"][0]["users"] = ["bob"]
            server.config_path.write_text(json.dumps(config))
            os.kill(server.proc.pid, signal.SIGHUP)
            assert wait_until(lambda: "authentication and access control reloaded" in server.log(), timeout=10)
            assert c.get("/v2/ops/reloaded/tags/list").status_code == 403
            with httpx.Client(base_url=server.url, timeout=30, auth=("bob", PASSWORDS["bob"])) as bob:
                assert bob.get("/v2/ops/reloaded/tags/list").json()["tags"] == ["v1"]
            config["http"]["accessControl"]["repositories"]["ops/**"]["policies"][0]["actions"] = ["fly"]
            server.config_path.write_text(json.dumps(config))
            os.kill(server.proc.pid, signal.SIGHUP)
            assert wait_until(lambda: "not reloaded, the running settings stay" in server.log(), timeout=10)
            with httpx.Client(base_url=server.url, timeout=30, auth=("bob", PASSWORDS["bob"])) as bob:
                assert bob.get("/v2/ops/reloaded/tags/list").status_code == 200
    finally:
        server.stop()


def test_a_tls_probe_on_the_plain_port_is_no_warning(tmp_path: Path) -> None:
    """skopeo tries TLS first: its ClientHello must not put a warning in the log per pull."""
    import socket

    server = OcistoreServer(tmp_path).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))
            sock.settimeout(10)
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
        with httpx.Client(base_url=server.url, timeout=30) as c:  # a request after it, logged
            assert c.get("/v2/", headers={"X-Request-Id": "after-the-probe"}).status_code == 200
        assert wait_until(lambda: "after-the-probe" in server.log(), timeout=10)
        warned = [d for d in json_lines(server.log()) if d["level"] == "warn"]
        assert warned == [], warned
    finally:
        server.stop()
