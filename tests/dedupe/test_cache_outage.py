"""A dedupe cache (holder index) that cannot be reached fails the requests that need it with the
spec's 503, never an internal error, loses nothing already stored, and is used again as soon as
it answers: for every remote cache driver."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from tests.moto import REGION
from tests.servers import OcistoreServer, RedisServer, free_port, running_redis


def _push(url: str, repo: str, body: bytes) -> httpx.Response:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return httpx.post(f"{url}/v2/{repo}/blobs/uploads/?digest={digest}", content=body, timeout=60)


def _pull(url: str, repo: str, body: bytes) -> bytes:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    resp = httpx.get(f"{url}/v2/{repo}/blobs/{digest}", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.content


def _assert_unavailable(resp: httpx.Response, cache: str) -> None:
    assert resp.status_code == 503, resp.text
    error = resp.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert cache in error["message"]
    assert resp.headers["retry-after"] == "30"


def test_a_redis_cache_that_goes_away_answers_503_then_works_again(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis") as redis:
        server = _server(tmp_path, redis)
        try:
            stored = os.urandom(3000)
            assert _push(server.url, "outage/a", stored).status_code == 201
            redis.stop()
            _assert_unavailable(_push(server.url, "outage/a", os.urandom(3000)), "redis")
            assert _pull(server.url, "outage/a", stored) == stored  # what was stored is served
            redis.start()
            again = os.urandom(3000)
            assert _push(server.url, "outage/b", again).status_code == 201
            assert _pull(server.url, "outage/b", again) == again
            assert "redis holder index (dedupe cache) is unreachable" in server.log()
        finally:
            server.stop()


def _server(workdir: Path, redis: RedisServer) -> OcistoreServer:
    return OcistoreServer(workdir, {"dedupe": True, "remoteCache": True,
                                    "cacheDriver": {"name": "redis", "url": redis.url}}).start()


def test_an_unreachable_dynamodb_cache_answers_503(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = OcistoreServer(tmp_path, {"dedupe": True, "remoteCache": True,
                                       "cacheDriver": {"name": "dynamodb", "endpoint": nobody, "region": REGION,
                                                       "cacheTablename": "blobs"}}).start()
    try:
        _assert_unavailable(_push(server.url, "outage/d", os.urandom(2000)), "dynamodb")
        assert "dynamodb holder index (dedupe cache) is unreachable" in server.log()
    finally:
        server.stop()
