"""The index.json rewrite is fenced, deterministically, in process: a write whose lease was
lost, or that finds the index rewritten by a writer that did not hold the lock, is refused
whole (nothing acknowledged) and leaves the other writer's index as it was."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ocistore.errors import ErrorCode, RegistryError
from ocistore.lease import Locks
from ocistore.locks import Lease, LeaseLost, LocalLocks
from ocistore.registry.index import Draft, IndexStore
from ocistore.registry.repositories import RepositoryIndex
from ocistore.registry.tags import put_tags
from ocistore.storage.local import LocalDriver


def _index(driver: LocalDriver, locks: Locks) -> IndexStore:
    """An index store as a Store makes it, with the store's repository index."""
    async def walk() -> list[str]:
        return await driver.dirs_containing(frozenset({"index.json"}), frozenset({"blobs"}))

    return IndexStore(driver, locks, RepositoryIndex(driver, locks, walk, f"local:{driver.root}", "", None))

DIGEST = "sha256:" + "a" * 64
DESC = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 2}


class LosingLocks(LocalLocks):
    """Hands out leases that are lost as soon as they are taken (a Redis lease expired mid-write)."""

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[Lease]:
        async with super().hold(name, wait) as lease:
            lease.lost = True
            yield lease


def tags_on_disk(root: Path) -> list[str]:
    doc = json.loads((root / "r" / "index.json").read_bytes())
    return sorted(d["annotations"]["org.opencontainers.image.ref.name"] for d in doc["manifests"])


def test_a_write_under_a_lost_lease_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        await _index(LocalDriver(str(tmp_path)), LocalLocks()).update("r", put_tags(DESC, ["kept"]))
        with pytest.raises(LeaseLost):
            await _index(LocalDriver(str(tmp_path)), LosingLocks()).update("r", put_tags(DESC, ["lost"]))
    asyncio.run(scenario())
    assert tags_on_disk(tmp_path) == ["kept"]


def test_a_write_that_finds_the_index_rewritten_under_it_is_refused(tmp_path: Path) -> None:
    driver = LocalDriver(str(tmp_path))
    ours, theirs = _index(driver, LocalLocks()), _index(driver, LocalLocks())

    async def scenario() -> None:
        await ours.update("r", put_tags(DESC, ["first"]))
        tagging = put_tags(DESC, ["ours"])

        async def racing(draft: Draft) -> None:
            # Between our read and our write, another replica (its own lock) tags the repository.
            await theirs.update("r", put_tags(DESC, ["theirs"]))
            await tagging(draft)

        with pytest.raises(RegistryError) as refused:
            await ours.update("r", racing)
        assert refused.value.code is ErrorCode.UNAVAILABLE
    asyncio.run(scenario())
    assert tags_on_disk(tmp_path) == ["first", "theirs"]
