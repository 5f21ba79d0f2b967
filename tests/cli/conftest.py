"""Stores for the CLI tests, filled through a real `ocistore serve` and then left to the commands.

`filled` is shared by the tests that only read (or dry-run) it: two repositories whose images
share one layer (a hard link with dedupe on, the default), and an old blob nothing references.
A test that removes anything makes a store of its own with `new_server`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import push_blob
from tests.cli.helpers import Pushed, age_everything, push_image
from tests.servers import OcistoreServer

# Nothing ages past it while a command runs; what a test needs old is made old by file times.
GC_DELAY = "1h"
OLD = 2 * 3600.0


@dataclass
class Filled:
    server: OcistoreServer
    app: Pushed
    other: Pushed
    orphan: bytes

    @property
    def config(self) -> str:
        return str(self.server.config_path)


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., OcistoreServer]]:
    """Start `ocistore serve` on a store of the test's own (gcDelay 1h unless told); stopped at the end."""
    started: list[OcistoreServer] = []

    def start(**storage: Any) -> OcistoreServer:
        workdir = tmp_path / f"server-{len(started)}"
        workdir.mkdir()
        server = OcistoreServer(workdir, storage={"gc": True, "gcDelay": GC_DELAY, **storage}).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    server = OcistoreServer(tmp_path_factory.mktemp("filled"), storage={"gc": True, "gcDelay": GC_DELAY}).start()
    try:
        shared = os.urandom(40 << 10)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            app = push_image(client, "cli/app", "v1", [shared, os.urandom(20 << 10)])
            other = push_image(client, "cli/other", "v1", [shared, os.urandom(3000)])
            orphan = os.urandom(10 << 10)
            push_blob(client, "cli/app", orphan)
    finally:
        server.stop()
    age_everything(server, OLD)
    yield Filled(server, app, other, orphan)
