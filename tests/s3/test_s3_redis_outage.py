"""A registry on S3 whose locks are Redis leases, with Redis stopped or hung: writes answer
503 with Retry-After (never proceed under a lock other replicas cannot see), pulls go on,
a hung Redis costs about one timeout rather than one per request, and writes resume when
Redis is back with every acknowledged tag kept."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import assert_error, build_image, digest_of, push_random_image
from tests.moto import MotoServer
from tests.s3.conftest import Launched
from tests.servers import OcistoreServer, RedisServer, running_redis, wait_until


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, moto_s3: MotoServer, bucket: str, own_redis: RedisServer,
           launched: Launched) -> OcistoreServer:
    (tmp_path / "srv").mkdir()
    srv = OcistoreServer(tmp_path / "srv", storage={"storageDriver": moto_s3.driver_params(bucket)},
                         extra={"redis": own_redis.url})
    launched.add(srv)
    return srv.start()


def test_writes_wait_for_redis_and_pulls_go_on(server: OcistoreServer, own_redis: RedisServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = push_random_image(client, "outage/app", "before")
        pending = build_image(client, "outage/app")
        own_redis.stop()

        resp = client.put("/v2/outage/app/manifests/during", content=pending.manifest,
                          headers={"Content-Type": pending.media_type})
        assert_error(resp, 503, "UNAVAILABLE")
        assert int(resp.headers["Retry-After"]) >= 1
        session = client.post("/v2/outage/app/blobs/uploads/")
        if session.status_code == 202:  # opening needs no lock; writing into it does
            resp = client.patch(session.headers["Location"], content=b"x" * 100,
                                headers={"Content-Type": "application/octet-stream"})
            assert_error(resp, 503, "UNAVAILABLE")
        got = client.get("/v2/outage/app/manifests/before", headers={"Accept": before.media_type})
        assert got.status_code == 200 and got.content == before.manifest
        assert client.get(f"/v2/outage/app/blobs/{digest_of(before.layers[0])}").status_code == 200
        assert client.get("/v2/outage/app/tags/list").json()["tags"] == ["before"]

        own_redis.start()

        def tagged() -> bool:
            return client.put("/v2/outage/app/manifests/after", content=pending.manifest,
                              headers={"Content-Type": pending.media_type}).status_code == 201
        assert wait_until(tagged, 30, 0.2) is not None, "writes did not resume after Redis came back"
        assert sorted(client.get("/v2/outage/app/tags/list").json()["tags"]) == ["after", "before"]
    assert "redis unreachable" in server.log()


def test_a_hung_redis_stalls_writes_for_about_one_timeout(server: OcistoreServer, own_redis: RedisServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        image = push_random_image(client, "hung/app", "v0")
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            for i in range(20):
                resp = client.put(f"/v2/hung/app/manifests/t{i}", content=image.manifest,
                                  headers={"Content-Type": image.media_type})
                assert_error(resp, 503, "UNAVAILABLE")
            stalled = time.monotonic() - started
            # Twenty refused writes cost a few socket timeouts as the breaker probes, not twenty.
            assert stalled < 10, f"20 writes against a hung Redis took {stalled:.1f}s"
            assert client.get("/v2/hung/app/manifests/v0").status_code == 200
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
