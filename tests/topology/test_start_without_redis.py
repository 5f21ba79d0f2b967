"""Every process starts with its configured Redis down, logs it once, serves what it can, and
picks Redis up when it comes: `serve`, and the workers of the scaled topology."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import push_random_image
from tests.servers import BIN, OcistoreServer, RedisServer, stop_process, wait_until


@pytest.fixture
def stopped_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis that is configured but not running (yet)."""
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_serve_starts_and_serves_with_redis_down(tmp_path: Path, stopped_redis: RedisServer) -> None:
    (tmp_path / "srv").mkdir()
    server = OcistoreServer(tmp_path / "srv", extra={"redis": stopped_redis.url}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            image = push_random_image(client, "nored/app", "v1")
            assert client.get("/v2/nored/app/manifests/v1").content == image.manifest
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["dependencies"]["redis"] is False, ready.text
            stopped_redis.start()
            assert wait_until(lambda: client.get("/readyz").json()["dependencies"]["redis"] is True, 30, 0.2)
            push_random_image(client, "nored/app", "v2")
        assert server.log().count("connection error") <= 1, "an outage must be one line, not one per retry"
        assert "Traceback" not in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize("worker", ["ocistore-gc-worker", "ocistore-scrub-worker"])
def test_a_worker_starts_with_redis_down_and_stays_up(tmp_path: Path, stopped_redis: RedisServer,
                                                      worker: str) -> None:
    (tmp_path / "srv").mkdir()
    server = OcistoreServer(tmp_path / "srv", extra={"redis": stopped_redis.url})
    log = tmp_path / f"{worker}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / worker), str(server.config_path)], stdout=out, stderr=subprocess.STDOUT)
    try:
        # Up for a while with nothing to talk to, then Redis comes and it is still up.
        assert wait_until(lambda: "connection error" in log.read_text(errors="replace"), 30, 0.2), log.read_text()
        assert proc.poll() is None, log.read_text()
        stopped_redis.start()
        assert wait_until(lambda: stopped_redis.ping(), 10)
        assert proc.poll() is None, log.read_text()
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text()
    finally:
        stop_process(proc)
