"""The web page's repository list: a page of the catalog without walking the whole store.

Checked against the catalog itself (`catalog.catalog`, sorted, the API's `_catalog` order) on
names whose string order and tree order differ (`a-b` sorts before `a/b`, `a/b` after `a.b`),
for every `last` and page size, with subPaths and a reader's filter.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from ocistore.config import parse_config
from ocistore.registry import Registry, catalog
from ocistore.registry.listing import repository_page
from ocistore.storage import StorageDriver

NAMES = ["a", "a-b", "a.b", "a/b", "a/b/c", "a/b-c", "a_b", "ab", "b", "b/a/z", "ci/app", "ci/app/web",
         "z0/blobs-not/x", "zz"]


def _layout(root: Path, name: str) -> None:
    d = root / name
    (d / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')


def _registry(tmp: Path, sub: bool) -> Registry:
    storage: dict[str, object] = {"rootDirectory": str(tmp / "data"), "dedupe": False}
    if sub:
        storage["subPaths"] = {"/ci": {"rootDirectory": str(tmp / "ci"), "dedupe": False}}
    registry = Registry.from_config(parse_config({"storage": storage}))
    for name in NAMES:
        _layout(tmp / ("ci" if sub and name.startswith("ci/") else "data"), name)
    # Not repositories: a hidden directory, a layout's blobs, a directory without index.json, and a
    # name routed to another store but lying in the default one.
    _layout(tmp / "data", ".ocistore/x")
    (tmp / "data" / "a" / "blobs" / "sha256" / "index.json").write_text("{}")
    (tmp / "data" / "empty" / "dir").mkdir(parents=True)
    if sub:
        _layout(tmp / "data", "ci/stray")
    return registry


async def _pages(registry: Registry, n: int, accept: Callable[[str], bool] | None = None) -> list[list[str]]:
    pages, last = [], None
    while True:
        names, more = await repository_page(registry, last, n, accept)
        pages.append(names)
        if not more:
            return pages
        last = names[-1]


def test_pages_follow_the_catalog_order_for_every_last_and_size(tmp_path: Path) -> None:
    for sub in (False, True):
        registry = _registry(tmp_path / str(sub), sub)

        async def check(registry: Registry) -> None:
            expected = sorted(await catalog.catalog(registry))
            assert expected == sorted(NAMES)
            for n in (1, 2, 3, 5, 100):
                pages = await _pages(registry, n)
                assert [x for p in pages for x in p] == expected
                assert all(len(p) <= n for p in pages) and all(pages[:-1])
            for last in ["", *expected, "a/", "a0", "b/", "c", "zzz"]:
                names, _ = await repository_page(registry, last or None, 1000)
                assert names == [x for x in expected if not last or x > last], last
            only = {"a/b/c", "zz"}
            assert [x for p in await _pages(registry, 1, only.__contains__) for x in p] == sorted(only)
            await registry.close()

        asyncio.run(check(registry))


class CountingLists:
    """Counts the driver's `list` calls: what a page costs."""

    def __init__(self, driver: StorageDriver) -> None:
        self.calls = 0
        original = driver.list

        async def counted(path: str) -> list[str]:
            self.calls += 1
            return await original(path)

        driver.list = counted  # type: ignore[method-assign]


def test_a_page_of_ten_thousand_repositories_lists_about_a_page_of_directories(tmp_path: Path) -> None:
    root = tmp_path / "data"
    names = [f"org{i % 10}/app{i:05d}" for i in range(10_000)]
    index = json.dumps({"schemaVersion": 2, "manifests": []})
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "index.json").write_text(index)
    registry = Registry.from_config(parse_config({"storage": {"rootDirectory": str(root), "dedupe": False}}))
    counter = CountingLists(registry.default.driver)

    async def check() -> None:
        started = time.perf_counter()
        first, more = await repository_page(registry, None, 50)
        assert more and first == sorted(names)[:50]
        later, _ = await repository_page(registry, "org7/app05000", 50)
        assert later == [n for n in sorted(names) if n > "org7/app05000"][:50]
        seconds = time.perf_counter() - started
        # Two pages: the root, one org directory each (or two), and one listing per repository passed.
        assert counter.calls <= 2 * (1 + 2 + 51), counter.calls
        assert seconds < 2.0, seconds
        await registry.close()

    asyncio.run(check())
