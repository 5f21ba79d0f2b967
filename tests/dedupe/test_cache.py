"""The cache contract, the same for every driver: originals, holders, promotion."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from ocistore.cache import open_cache
from ocistore.config import CacheDriverConfig

D = "sha256:" + "ab" * 32

def holder_index(raw: dict[str, object] | None) -> CacheDriverConfig | None:
    """A `cacheDriver` block as a config file gives it."""
    return None if raw is None else TypeAdapter(CacheDriverConfig).validate_python(raw, context={"file": True})



def test_original_holders_and_promotion(cache_storage: dict[str, Any], tmp_path: Path) -> None:
    async def scenario() -> None:
        cache = open_cache(holder_index(cache_storage.get("cacheDriver")), str(tmp_path))
        try:
            assert await cache.original(D) is None
            assert await cache.holders(D) == []
            await cache.add(D, "a/blobs/sha256/x")
            await cache.add(D, "b/blobs/sha256/x")
            await cache.add(D, "a/blobs/sha256/x")  # idempotent
            assert await cache.original(D) == "a/blobs/sha256/x"
            assert await cache.holders(D) == ["a/blobs/sha256/x", "b/blobs/sha256/x"]
            await cache.remove(D, "a/blobs/sha256/x")
            assert await cache.original(D) == "b/blobs/sha256/x"
            await cache.remove(D, "nobody")  # unknown holder: nothing happens
            await cache.remove(D, "b/blobs/sha256/x")
            assert await cache.original(D) is None
            assert await cache.holders(D) == []
        finally:
            await cache.close()

    asyncio.run(scenario())


def test_the_original_is_the_first_holder_whatever_the_clocks(cache_storage: dict[str, Any], tmp_path: Path) -> None:
    """Two replicas whose clocks disagree add holders: the order they were added in
    decides the original, never a timestamp either replica wrote (patched clocks here)."""
    import time
    from unittest import mock

    async def scenario() -> None:
        cache = open_cache(holder_index(cache_storage.get("cacheDriver")), str(tmp_path))
        try:
            with mock.patch.object(time, "time", return_value=2_000_000_000.0):  # a replica years ahead
                await cache.add(D, "ahead/blobs/sha256/x")
            with mock.patch.object(time, "time", return_value=1_000_000_000.0):  # one years behind
                await cache.add(D, "behind/blobs/sha256/x")
            assert await cache.original(D) == "ahead/blobs/sha256/x"
            assert await cache.holders(D) == ["ahead/blobs/sha256/x", "behind/blobs/sha256/x"]
            await cache.remove(D, "ahead/blobs/sha256/x")
            await cache.remove(D, "behind/blobs/sha256/x")
        finally:
            await cache.close()

    asyncio.run(scenario())
