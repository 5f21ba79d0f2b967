"""`http.ratelimit` on a real server: past a client's rate, 429 TOOMANYREQUESTS in the spec's
envelope with Retry-After; per method; per client address; over HTTPS too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error
from tests.servers import OcistoreServer, wait_until


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[OcistoreServer]]:
    started: list[OcistoreServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def serve(servers: list[OcistoreServer], tmp_path: Path, ratelimit: dict[str, Any]) -> OcistoreServer:
    workdir = tmp_path / f"server-{len(servers)}"
    workdir.mkdir()
    server = OcistoreServer(workdir, extra={"http": {"ratelimit": ratelimit}})
    servers.append(server)
    return server.start()


def burst(client: httpx.Client, method: str, path: str, count: int) -> tuple[list[httpx.Response], float]:
    start = time.monotonic()
    answers = [client.request(method, path) for _ in range(count)]
    return answers, time.monotonic() - start


def test_a_burst_past_the_rate_is_answered_429_with_retry_after(servers: list[OcistoreServer],
                                                                tmp_path: Path) -> None:
    server = serve(servers, tmp_path, {"rate": 2})
    # From an address of its own: the start-up probe's requests came from 127.0.0.1.
    fresh = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=server.url, timeout=30, transport=fresh) as client:
        answers, took = burst(client, "GET", "/v2/", 12)
        # The bucket holds `rate` tokens and gains `rate` a second: of 12 requests in `took`
        # seconds at most 2 + 2 * took pass.
        passed = sum(a.status_code == 200 for a in answers)
        assert [a.status_code for a in answers[:2]] == [200, 200]
        assert passed <= 2 + 2 * took + 1, (passed, took)
        refused = next(a for a in answers if a.status_code != 200)
        assert_error(refused, 429, "TOOMANYREQUESTS")
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        error = refused.json()["errors"][0]
        assert error["detail"] == {"rate": 2, "method": None}
        assert "at most 2 requests a second" in error["message"]
        # Once the client waits as told, it is served again.
        assert wait_until(lambda: client.get("/v2/").status_code == 200, 10, interval=0.5)


def test_a_method_rate_limits_that_method_alone(servers: list[OcistoreServer], tmp_path: Path) -> None:
    server = serve(servers, tmp_path, {"methods": [{"method": "HEAD", "rate": 1}]})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        gets, _ = burst(client, "GET", "/v2/", 20)
        assert {a.status_code for a in gets} == {200}
        heads, took = burst(client, "HEAD", "/v2/", 6)
        assert heads[0].status_code == 200
        assert sum(a.status_code == 200 for a in heads) <= 1 + took + 1, took
        refused = next(a for a in heads if a.status_code != 200)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_each_client_address_has_its_own_bucket(servers: list[OcistoreServer], tmp_path: Path) -> None:
    server = serve(servers, tmp_path, {"rate": 1})
    with httpx.Client(base_url=server.url, timeout=30) as first:
        answers, took = burst(first, "GET", "/v2/", 5)
        assert any(a.status_code == 429 for a in answers), took
    # Another loopback address is another client, with a full bucket.
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, timeout=30, transport=other) as second:
        assert second.get("/v2/").status_code == 200
