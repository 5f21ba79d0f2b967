"""Fixtures for the scaled topology: a real `redis-server` and `ocistore topology` over it.

The topology runs as the user would run it (`ocistore topology CONFIG --replicas 2`), with the
Redis started here so a test can stop and restart it mid-test on the same port.  One topology
serves a whole module (each test uses its own repositories); a failing test gets the tail of
every process's log attached, since an HTTP answer alone rarely says what a worker did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import BIN, RedisServer, free_port, wait_http

LOG_TAIL_LINES = 60
GC_DELAY = 2.0
SCRUB_INTERVAL = 3.0
START_TIMEOUT = 60.0


@dataclass
class Topology:
    """A running `ocistore topology`: the load balancer, the replicas, where data and logs live."""

    url: str
    replicas: list[str]
    root: Path
    logs: Path
    config_path: Path
    own_log: Path
    redis: RedisServer
    proc: subprocess.Popen[bytes]
    pids: list[int]

    def log(self, name: str) -> str:
        """One process's log, by the launcher's name for it (api-1, gc-worker, scrub-worker)."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tails(self) -> list[tuple[str, str]]:
        return log_tails([self.own_log, self.redis.log_path, *sorted(self.logs.glob("*.log"))])


def log_tails(paths: list[Path], lines: int = LOG_TAIL_LINES) -> list[tuple[str, str]]:
    """(title, last lines) of each log that exists, for a failing test's report."""
    out = []
    for path in paths:
        if path.exists():
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            out.append((f"{path.name} (last {lines} lines)", tail))
    return out


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Started here, not by the launcher, so a test can take it away and bring it back."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _stop(proc: subprocess.Popen[bytes], pids: list[int]) -> None:
    """SIGTERM the launcher, which stops its children; if it had to be killed, kill what it left by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = b"ocistore" in f.read()
            if ours:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Topology]:
    """`ocistore topology CONFIG --replicas 2` with gcDelay 2s, scrub every 3s, on our Redis."""
    workdir = tmp_path_factory.mktemp("topology")
    root = workdir / "data"
    port = free_port()
    config = {
        "distSpecVersion": "1.1.0",
        "storage": {"rootDirectory": str(root), "gc": True, "gcDelay": f"{GC_DELAY:g}s", "gcInterval": "1h"},
        "http": {"address": "127.0.0.1", "port": str(port)},
        "log": {"level": "info"},
        "extensions": {"scrub": {"enable": True, "interval": f"{SCRUB_INTERVAL:g}s"}},
        "redis": redis_server.url,
    }
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    state_path = workdir / "state.json"
    own_log = workdir / "topology.log"
    logf = open(own_log, "ab")
    proc = subprocess.Popen(
        [str(BIN / "ocistore"), "topology", str(config_path), "--replicas", "2", "--state", str(state_path)],
        stdout=logf, stderr=subprocess.STDOUT, cwd=workdir,
    )
    logf.close()
    state: dict[str, object] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not state:
            if proc.poll() is not None:
                raise RuntimeError(f"ocistore topology exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no state file after {START_TIMEOUT}s")
            try:
                state = json.loads(state_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.1)
        replicas = [str(u) for u in state["replicas"]]  # type: ignore[attr-defined]
        assert len(replicas) == 2, state
        assert state["redis"] == redis_server.url, state
        for url in [str(state["url"]), *replicas]:
            wait_http(f"{url}/v2/", proc, timeout=START_TIMEOUT)
            assert httpx.get(f"{url}/v2/", timeout=10).status_code == 200
    except Exception as exc:
        logs = sorted(Path(str(state["logs"])).glob("*.log")) if "logs" in state else []
        _stop(proc, [int(p) for p in state.get("pids", [])])  # type: ignore[attr-defined]
        tails = "\n".join(f"--- {title}\n{text}" for title, text in log_tails([own_log, *logs]))
        raise RuntimeError(f"topology did not come up: {exc}\n{tails}") from exc
    topo = Topology(
        url=str(state["url"]), replicas=replicas, root=root, logs=Path(str(state["logs"])),
        config_path=config_path, own_log=own_log, redis=redis_server, proc=proc,
        pids=[int(p) for p in state["pids"]],  # type: ignore[attr-defined]
    )
    try:
        yield topo
    finally:
        _stop(proc, topo.pids)


@pytest.fixture
def replica_clients(topology: Topology) -> Iterator[list[httpx.Client]]:
    """One client per replica, so a test decides which replica serves each request."""
    clients = [httpx.Client(base_url=url, timeout=60.0) for url in topology.replicas]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def lb_client(topology: Topology) -> Iterator[httpx.Client]:
    """A client of the load balancer, the one address users know."""
    with httpx.Client(base_url=topology.url, timeout=60.0) as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        topo = getattr(item, "funcargs", {}).get("topology")
        if isinstance(topo, Topology):
            report.sections.extend(topo.tails())
    return report
