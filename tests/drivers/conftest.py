"""The driver suite runs once per storage driver: every driver must behave alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocistore.storage import StorageDriver
from ocistore.storage.local import LocalDriver

DriverFactory = Callable[[], StorageDriver]


@pytest.fixture(params=["local"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverFactory]:
    root = tmp_path / "store"
    yield lambda: LocalDriver(str(root))
    # As in Distribution's suite: a test that leaves anything behind fails.
    leftovers = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert not leftovers, f"left behind: {leftovers}"
