"""The driver suite runs once per storage driver: every driver must behave alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocistore.storage import StorageDriver
from ocistore.storage.local import LocalDriver
from ocistore.storage.reserve import RESERVE_FILE
from ocistore.storage.s3 import S3Driver
from tests.moto import MotoServer

DriverFactory = Callable[[], StorageDriver]


def close_with_loop(driver: S3Driver) -> asyncio.Task[None]:
    """Close the driver's client when `asyncio.run` ends the running loop.

    The suite's bodies never call `close()`; `asyncio.run` cancels what is still pending
    before it closes the loop, and this task closes the client then, inside that loop.
    Keep the returned task referenced: the loop holds only a weak reference.
    """

    async def wait_then_close() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await driver.close()

    return asyncio.get_running_loop().create_task(wait_then_close())


@pytest.fixture(params=["local", "s3"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverFactory]:
    if request.param == "local":
        root = tmp_path / "store"
        yield lambda: LocalDriver(str(root))
        # As in Distribution's suite: a test that leaves anything behind fails.
        # The driver's own reserve of space (storage/reserve.py) is not a test's leftover.
        leftovers = [p for p in root.rglob("*") if p.is_file() and p != root / RESERVE_FILE] if root.exists() else []
        assert not leftovers, f"left behind: {leftovers}"
        return

    moto: MotoServer = request.getfixturevalue("moto_s3")
    bucket = moto.new_bucket()
    params = moto.driver_params(bucket, rootdirectory="/ocistore")
    closers: list[asyncio.Task[None]] = []

    def make() -> StorageDriver:
        driver = S3Driver.from_params(params)
        closers.append(close_with_loop(driver))
        return driver

    yield make
    # Anywhere in the bucket, and unfinished multipart uploads count too.
    left = moto.keys(bucket) + [f"upload of {u['Key']}" for u in moto.uploads(bucket)]
    moto.remove_bucket(bucket)
    assert not left, f"left behind: {left}"
