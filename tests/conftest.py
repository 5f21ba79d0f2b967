"""Shared fixtures.

`registry` is a real deployment per mode: one `ocistore serve` process on local disk (and the
same with htpasswd logins and access control, every request of the suite logged in); the
same on S3 (moto's server on loopback); subPaths mixing an S3 store and a local store
that holds the repositories under test; and the scaled topology (two API replicas behind
a load balancer, both workers, a real Redis).  The API suite uses it
through `client`, and each test gets its own repository name through `repo`, so tests
never see each other's data on the shared deployment.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.moto import MotoServer
from tests.moto import moto_s3 as moto_s3
from tests.servers import OcistoreServer, OcistoreTopology, RedisServer, running_redis

DEPLOYMENT_MODES = ["single-process", "s3", "subpaths", "topology", "htpasswd"]
# The htpasswd mode's one user: every request of the suite logs in (the URL carries it).
SUITE_USER, SUITE_PASSWORD = "suite", "suite-password"
Deployment = OcistoreServer | OcistoreTopology


@pytest.fixture(scope="session")
def session_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _deployment(mode: str, workdir: Path, request: pytest.FixtureRequest) -> Deployment:
    if mode == "single-process":
        return OcistoreServer(workdir)
    if mode == "s3":
        moto: MotoServer = request.getfixturevalue("moto_s3")
        return OcistoreServer(workdir, storage={"storageDriver": moto.driver_params(moto.new_bucket())})
    if mode == "subpaths":
        # The suite's repositories are all named test/...: they live in the local /test store,
        # beside a default store on S3.
        moto = request.getfixturevalue("moto_s3")
        return OcistoreServer(workdir, storage={
            "storageDriver": moto.driver_params(moto.new_bucket()),
            "subPaths": {"/test": {"rootDirectory": str(workdir / "sub")}},
        })
    if mode == "topology":
        redis: RedisServer = request.getfixturevalue("session_redis")
        return OcistoreTopology(workdir, redis.url)
    if mode == "htpasswd":
        # Logins and access control on: the whole suite, credentials included, must pass as is.
        import bcrypt

        htpasswd = workdir / "htpasswd"
        htpasswd.write_bytes(SUITE_USER.encode() + b":" + bcrypt.hashpw(SUITE_PASSWORD.encode(), bcrypt.gensalt(5)))
        everything = ["read", "create", "update", "delete"]
        server = OcistoreServer(workdir, extra={"http": {
            "auth": {"htpasswd": {"path": str(htpasswd)}},
            "accessControl": {
                "repositories": {"**": {"policies": [{"users": [SUITE_USER], "actions": everything}]}},
                "adminPolicy": {"users": [SUITE_USER], "actions": everything},
                "metrics": {"users": [SUITE_USER]},
            }}})
        server.url = server.url.replace("http://", f"http://{SUITE_USER}:{SUITE_PASSWORD}@", 1)
        return server
    raise AssertionError(mode)


def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    server = _deployment(request.param, tmp_path_factory.mktemp(f"registry-{request.param}"), request)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=DEPLOYMENT_MODES)
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request, tmp_path_factory)


@pytest.fixture
def client(registry: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60.0) as c:
        yield c


@pytest.fixture
def repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[OcistoreServer]:
    """A server of one's own, for tests that look at the whole store (catalog, disk)."""
    server = OcistoreServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


LOG_TAIL_LINES = 80


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def _logs_of(name: str, value: Any) -> list[tuple[str, str]]:
    """(title, tail) of every process log a fixture value owns: a server, or a pool of them."""
    if callable(getattr(value, "process_logs", None)):  # a topology: each of its processes on its own
        paths = [value.log_path, *value.process_logs()]
        return [(f"{name}: {p.name} (last {LOG_TAIL_LINES} lines)", _tail(p.read_text(errors="replace")))
                for p in paths if p.exists()]
    if callable(getattr(value, "log", None)):
        tail = _tail(value.log())
        return [(f"{name}: {type(value).__name__} log (last {LOG_TAIL_LINES} lines)", tail)] if tail else []
    members = getattr(value, "servers", None) or getattr(value, "processes", None)
    sections = [s for i, member in enumerate(members or []) for s in _logs_of(f"{name}[{i}]", member)]
    return sections + [(f"{name}: command", note) for note in getattr(value, "notes", [])]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test gets the tail of every process log its fixtures own: an HTTP answer alone
    rarely says what a server or worker did."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            report.sections.extend(_logs_of(name, value))
    return report
