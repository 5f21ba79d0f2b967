"""Shared fixtures.

`registry` is a real server per deployment mode; the API suite uses it through
`client`, and each test gets its own repository name through `repo`, so tests never
see each other's data on the shared server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import OcistoreServer

DEPLOYMENT_MODES = ["single-process"]


@pytest.fixture(scope="session", params=DEPLOYMENT_MODES)
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    server = OcistoreServer(tmp_path_factory.mktemp(f"registry-{request.param}")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(registry: OcistoreServer) -> Iterator[httpx.Client]:
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
