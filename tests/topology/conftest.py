"""Fixtures for the scaled topology: a real `redis-server` and `ocistore topology` over it.

The topology runs as the user would run it (`ocistore topology CONFIG --replicas 2`), with the
Redis started here so a test can stop and restart it mid-test on the same port.  One topology
serves a whole module (each test uses its own repositories); a failing test gets the tail of
every process's log attached, since an HTTP answer alone rarely says what a worker did.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.servers import OcistoreTopology, RedisServer, running_redis

GC_DELAY = 2.0
SCRUB_INTERVAL = 3.0
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Started here, not by the launcher, so a test can take it away and bring it back."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[OcistoreTopology]:
    """`ocistore topology CONFIG --replicas 2` with gcDelay 2s, scrub every 3s, on our Redis."""
    topo = OcistoreTopology(
        tmp_path_factory.mktemp("topology"), redis_server.url,
        storage={"gc": True, "gcDelay": f"{GC_DELAY:g}s", "gcInterval": "1h"},
        extra={"extensions": {"scrub": {"enable": True, "interval": f"{SCRUB_INTERVAL:g}s", "minInterval": "1s"}}},
        replicas=2,
    )
    try:
        topo.start(timeout=START_TIMEOUT)
        assert len(topo.replicas) == 2, topo.state
        assert topo.state["redis"] == redis_server.url, topo.state
        for url in [topo.url, *topo.replicas]:
            assert httpx.get(f"{url}/v2/", timeout=10).status_code == 200
    except Exception as exc:
        topo.stop()
        raise RuntimeError(f"topology did not come up: {exc}\n{topo.log()}") from exc
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture
def replica_clients(topology: OcistoreTopology) -> Iterator[list[httpx.Client]]:
    """One client per replica, so a test decides which replica serves each request."""
    clients = [httpx.Client(base_url=url, timeout=60.0) for url in topology.replicas]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def lb_client(topology: OcistoreTopology) -> Iterator[httpx.Client]:
    """A client of the load balancer, the one address users know."""
    with httpx.Client(base_url=topology.url, timeout=60.0) as c:
        yield c
