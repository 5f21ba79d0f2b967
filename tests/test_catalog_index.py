"""The catalog and the web page's repository list, read from the repository index.

Pages are checked against a walk of the stores (the truth: directories holding index.json)
on names whose string order and tree order differ (`a-b` sorts before `a/b`, `a/b` after
`a.b`), for every `last` and page size, with subPaths and a reader's filter; then what keeps
the index true: pushes, GC, layouts changed behind the registry's back, a restart, and
replicas sharing it through Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ocistore.config import parse_config
from ocistore.registry import Registry
from ocistore.registry.catalog import catalog_page
from ocistore.storage import StorageDriver
from tests.servers import RedisServer, free_port

# A database of its own on the session's redis-server, so flushing it touches no other test.
REDIS_DB = 7

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
        names, more = await catalog_page(registry, last, n, accept)
        pages.append(names)
        if not more:
            return pages
        last = names[-1]


def test_pages_follow_the_catalog_order_for_every_last_and_size(tmp_path: Path) -> None:
    for sub in (False, True):
        registry = _registry(tmp_path / str(sub), sub)

        async def check(registry: Registry) -> None:
            walked = {store: await store.walk_repositories() for store in registry.stores.values()}
            expected = sorted(n for store, names in walked.items() for n in names
                              if registry.routes_to(n, store) and not n.startswith("."))
            assert expected == sorted(NAMES)
            assert (await catalog_page(registry, None, None))[0] == expected
            for n in (1, 2, 3, 5, 100):
                pages = await _pages(registry, n)
                assert [x for p in pages for x in p] == expected
                assert all(len(p) <= n for p in pages) and all(pages[:-1])
            for last in ["", *expected, "a/", "a0", "b/", "c", "zzz"]:
                names, _ = await catalog_page(registry, last or None, 1000)
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


def test_pages_of_ten_thousand_repositories_list_no_directory_wherever_they_start(tmp_path: Path) -> None:
    root = tmp_path / "data"
    names = [f"org{i % 10}/app{i:05d}" for i in range(10_000)]
    index = json.dumps({"schemaVersion": 2, "manifests": []})
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "index.json").write_text(index)
    registry = Registry.from_config(parse_config({"storage": {"rootDirectory": str(root), "dedupe": False}}))
    counter = CountingLists(registry.default.driver)

    async def check() -> None:
        await registry.build_repository_indexes()  # what a serving process does at start
        walked = counter.calls
        first, more = await catalog_page(registry, None, 50)
        assert more and first == sorted(names)[:50]
        for last in ("org0/app00000", "org7/app05000", "org9/app09989"):
            later, _ = await catalog_page(registry, last, 50)
            assert later == [n for n in sorted(names) if n > last][:50]
        everything, more = await catalog_page(registry, None, None)
        assert everything == sorted(names) and not more
        assert counter.calls == walked, "a page listed directories of the store"
        await registry.close()

    asyncio.run(check())


def _plain_registry(root: Path, redis_url: str | None = None) -> Registry:
    config: dict[str, object] = {"storage": {"rootDirectory": str(root), "dedupe": False, "gcDelay": "1h"}}
    if redis_url:
        config["redis"] = redis_url
    return Registry.from_config(parse_config(config))


async def _all(registry: Registry) -> list[str]:
    return (await catalog_page(registry, None, None))[0]


def test_gc_removing_an_emptied_layout_takes_it_out_of_the_catalog(tmp_path: Path) -> None:
    from ocistore.gc import collect_repository

    root = tmp_path / "data"
    for name in ("kept", "emptied"):
        _layout(root, name)
    registry = _plain_registry(root)

    async def check() -> None:
        assert await _all(registry) == ["emptied", "kept"]
        long_ago = time.time() - 7200
        os.utime(root / "emptied" / "index.json", (long_ago, long_ago))
        report = await collect_repository(registry.default, "emptied")
        assert report.emptied and not (root / "emptied" / "index.json").exists()
        assert await _all(registry) == ["kept"]
        await registry.close()

    asyncio.run(check())


def test_the_sweep_repairs_an_index_the_store_was_changed_under(tmp_path: Path) -> None:
    """Layouts copied in or deleted behind the registry's back (an operator, another tool): the
    GC sweep finds both, and counts the corrections."""
    from ocistore.gc import collect_store
    from ocistore.metrics import REPOSITORY_INDEX_CORRECTIONS

    root = tmp_path / "data"
    for name in ("a", "b/c", "d"):
        _layout(root, name)
    registry = _plain_registry(root)

    def corrections(kind: str) -> float:
        return REPOSITORY_INDEX_CORRECTIONS.labels("/", kind)._value.get()

    async def check() -> None:
        assert await _all(registry) == ["a", "b/c", "d"]
        removed = corrections("removed")
        shutil.rmtree(root / "b")
        _layout(root, "copied/in")
        assert await _all(registry) == ["a", "b/c", "d"]  # nothing read the changes yet
        _ = [report async for report in collect_store(registry.default)]
        assert await _all(registry) == ["a", "copied/in", "d"]
        # The sweep's own read of `copied/in` listed it; the removal is a correction it counts.
        assert corrections("removed") == removed + 1
        await registry.close()

    asyncio.run(check())


def test_a_layout_copied_in_is_listed_once_a_request_reads_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _layout(root, "first")
    registry = _plain_registry(root)

    async def check() -> None:
        assert await _all(registry) == ["first"]
        _layout(root, "skopeo/copied")
        assert await registry.default.index.read("skopeo/copied") is not None  # a pull, a tags list
        assert await _all(registry) == ["first", "skopeo/copied"]
        await registry.close()

    asyncio.run(check())


def test_replicas_sharing_redis_list_each_others_repositories_at_once(
        tmp_path: Path, session_redis: RedisServer) -> None:
    """A repository created through replica A is in replica B's next page, with no walk by B."""
    root = tmp_path / "data"
    _layout(root, "before")
    url = f"redis://127.0.0.1:{session_redis.port}/{REDIS_DB}"
    import redis

    redis.Redis.from_url(url).flushdb()
    a, b = _plain_registry(root, url), _plain_registry(root, url)
    lists = CountingLists(b.default.driver)

    async def check() -> None:
        await a.build_repository_indexes()
        await b.build_repository_indexes()
        walked = lists.calls
        _layout(root, "pushed/through-a")
        await a.default.index.read("pushed/through-a")
        assert await _all(b) == ["before", "pushed/through-a"]
        assert lists.calls == walked
        await a.close()
        await b.close()

    asyncio.run(check())


def test_a_flushed_redis_is_noticed_by_the_next_page_and_the_store_walked_again(
        tmp_path: Path, session_redis: RedisServer) -> None:
    """Redis restarted empty (or failed over to an empty replica): the next page, whole or
    from any `last=`, lists every repository again instead of an empty or partial catalog."""
    from prometheus_client import REGISTRY

    def rebuilds() -> float:
        return REGISTRY.get_sample_value("ocistore_repository_index_rebuilds_total", {"store": "/"}) or 0.0

    root = tmp_path / "data"
    names = [f"repo-{i:03d}" for i in range(30)]
    for name in names:
        _layout(root, name)
    url = f"redis://127.0.0.1:{session_redis.port}/{REDIS_DB}"
    import redis

    redis.Redis.from_url(url).flushdb()
    a, b = _plain_registry(root, url), _plain_registry(root, url)

    async def check() -> None:
        await a.build_repository_indexes()
        await b.build_repository_indexes()
        assert await _all(b) == names
        before = rebuilds()
        redis.Redis.from_url(url).flushdb()
        page, more = await catalog_page(b, "repo-009", 5)
        assert (page, more) == (names[10:15], True)
        assert rebuilds() == before + 1  # walked once more, not served from the empty set
        assert await _all(a) == names  # the other replica reads the rebuilt set: no walk of its own
        assert await _all(b) == names
        assert rebuilds() == before + 1
        await a.close()
        await b.close()

    asyncio.run(check())


def test_an_unreachable_redis_index_answers_503_and_loses_no_push(tmp_path: Path) -> None:
    from ocistore.errors import ErrorCode, RegistryError

    root = tmp_path / "data"
    _layout(root, "x")
    registry = _plain_registry(root, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there

    async def check() -> None:
        try:
            await _all(registry)
        except RegistryError as exc:
            assert exc.code is ErrorCode.UNAVAILABLE
        else:
            raise AssertionError("a catalog without its index answered")
        # Reads that would add to the index go on: the index is a shortcut, not the truth.
        assert await registry.default.index.read("x") is not None
        await registry.close()

    asyncio.run(check())


def test_a_restart_lists_layouts_put_in_the_store_while_it_was_down(tmp_path: Path) -> None:
    import httpx

    from tests.servers import OcistoreServer

    server = OcistoreServer(tmp_path).start()
    try:
        _layout(server.root, "made/before")
        assert httpx.get(f"{server.url}/v2/made/before/tags/list", timeout=30).status_code == 200
        assert httpx.get(f"{server.url}/v2/_catalog", timeout=30).json()["repositories"] == ["made/before"]
        server.stop()
        _layout(server.root, "copied/while-down")
        server.start()
        listed = httpx.get(f"{server.url}/v2/_catalog?n=1", timeout=30)
        assert listed.json()["repositories"] == ["copied/while-down"] and "last=copied%2Fwhile-down" in \
            listed.headers["link"]
        assert httpx.get(f"{server.url}/v2/_catalog", timeout=30).json()["repositories"] == \
            ["copied/while-down", "made/before"]
    finally:
        server.stop()


def test_the_journal_tells_a_reader_each_change_once_and_when_to_walk_again(tmp_path: Path) -> None:
    """Processes sharing a store without Redis: what one appends, another reads once, in order;
    a half-written line waits; a replaced journal sends the reader back to a walk."""
    from ocistore.registry.repository_journal import Journal

    path = str(tmp_path / ".ocistore" / "repositories.journal")
    writer, reader = Journal(path), Journal(path)
    reader.start()
    assert reader.news() == []
    writer.append("a/b", True)
    writer.append("a/b", False)
    writer.append("c", True)
    with open(path, "ab") as f:
        f.write(b"+half-writ")
    assert [(c.name, c.added) for c in reader.news() or []] == [("a/b", True), ("a/b", False), ("c", True)]
    assert reader.news() == []
    with open(path, "ab") as f:
        f.write(b"ten\n")
    assert [(c.name, c.added) for c in reader.news() or []] == [("half-written", True)]
    os.replace(_fresh(tmp_path), path)
    assert reader.news() is None


def _fresh(tmp_path: Path) -> str:
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"")
    return str(fresh)
