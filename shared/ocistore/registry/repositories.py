"""The repository index: every repository of a store, kept sorted, so that the catalog and the
web page read a page of names instead of walking the store.

A page costs the same wherever it starts (a bisection, or Redis's ZRANGE BYLEX), at 500
repositories or at 100,000. The index is a shortcut, never the truth: the truth is which
directories hold an `index.json`, and the index is brought back to it

- when a repository comes into being: the index write that creates its `index.json` adds it,
  under the repository's lock;
- when GC removes an emptied layout, under the same lock;
- when any request reads an `index.json` that the index does not list (a layout copied into
  the store while the server runs is listed once it is used);
- at start-up: each serving process walks its stores once (`ensure_built`; a page waits for it);
- at each GC sweep (`verify`): a walk, what is missing added, and what is listed but gone
  removed only after a second look under the repository's lock, so a repository created
  during the walk is never dropped.

Without Redis the index lives in the process: one per store root, shared (thread-safe) by the
API and the workers that `ocistore serve` runs in it, and the processes sharing the store tell
each other of the repositories they create and remove through a journal
(`repository_journal`). With Redis it is a sorted set per store
that every replica reads and writes, so a repository pushed through one replica is listed by
all at once. The set also holds the empty name (never a repository's) once a walk has filled
it: every page reads that mark in the same round trip, and a set that lost it (a Redis that
was flushed, restarted without persistence, or failed over to an empty replica) is walked
again before the page is served, instead of answering an empty or partial catalog.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

from ..errors import ErrorCode, RegistryError
from ..layout import index_path
from ..locks import Locks
from ..logs import Sparse
from ..metrics import REPOSITORY_INDEX_CORRECTIONS, REPOSITORY_INDEX_REBUILDS
from ..names import is_valid_name
from ..redis_clients import LoopClients
from ..storage import PathNotFound, StorageDriver
from .repository_journal import Journal

log = logging.getLogger("ocistore.repositories")

KEY_PREFIX = "ocistore:repositories"
# Names read from Redis per round trip while a filtered page fills up.
BATCH = 500
# The member that says a walk filled the set: it sorts first and is never a repository's name.
BUILT = ""


class _Lost(Exception):
    """The Redis set no longer holds the mark of a walk: Redis lost what it held."""


class _Sorted:
    """A sorted set of names in memory, safe across the threads of one process, and the journal
    through which other processes tell it of their changes."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._members: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def add(self, names: Iterable[str]) -> int:
        with self._lock:
            added = 0
            for name in names:
                if name not in self._members:
                    self._members.add(name)
                    bisect.insort(self._names, name)
                    added += 1
            return added

    def remove(self, name: str) -> bool:
        with self._lock:
            if name not in self._members:
                return False
            self._members.discard(name)
            del self._names[bisect.bisect_left(self._names, name)]
            return True

    def after(self, last: str | None, count: int) -> list[str]:
        with self._lock:
            start = 0 if last is None else bisect.bisect_right(self._names, last)
            return self._names[start:start + count]

    def all(self) -> list[str]:
        with self._lock:
            return list(self._names)


def _unavailable(exc: RedisError) -> RegistryError:
    return RegistryError(ErrorCode.UNAVAILABLE, {"repository_index": "redis"}, headers={"Retry-After": "10"},
                         message=f"the repository index (Redis) is unreachable: {type(exc).__name__}")


# One in-memory index per store root in this process: the API's stores and the in-process
# workers' are different objects over the same directories.
_IN_PROCESS: dict[str, _Sorted] = {}
_IN_PROCESS_LOCK = threading.Lock()


def _shared_memory(identity: str, journal: str | None) -> _Sorted:
    with _IN_PROCESS_LOCK:
        return _IN_PROCESS.setdefault(identity, _Sorted(Journal(journal) if journal else None))


class RepositoryIndex:
    """One store's index; `identity` names the store's storage, `route` its subPath."""

    def __init__(self, driver: StorageDriver, locks: Locks, walk: Callable[[], Awaitable[list[str]]],
                 identity: str, route: str, redis_url: str | None, journal: str | None = None) -> None:
        self.driver = driver
        self.locks = locks
        self.route = route
        self._walk = walk
        self._key = f"{KEY_PREFIX}:{route or '/'}"
        self._memory = None if redis_url else _shared_memory(identity, journal)
        # With Redis: names this process knows the set holds, so a read adds nothing twice.
        self._known: set[str] = set()
        self._clients = LoopClients(redis_url, socket_timeout=5, socket_connect_timeout=2) if redis_url else None
        self._build: asyncio.Future[None] | None = None
        self._built = False
        self._say = Sparse(60.0)

    def _redis(self) -> Any:
        assert self._clients is not None
        return self._clients.get()

    # -- keeping it true ---------------------------------------------------------------

    async def add(self, name: str) -> None:
        """`name` holds an `index.json` now. Never fails its caller (a push, a pull): with
        Redis down the name is added by the next request that reads it, or the next sweep."""
        if self._memory is not None:
            self._memory.add([name])
            if self._memory.journal is not None:
                self._memory.journal.append(name, True)  # another process may have it removed
            return
        try:
            await self._add([name])
        except RedisError as exc:
            if self._say.due("add"):
                log.warning("repository index of store %s: could not add %s (%s); a later read or the "
                            "sweep will", self.route or "/", name, exc)

    async def _add(self, names: list[str]) -> int:
        if self._memory is not None:
            return self._memory.add(names)
        added = 0
        for start in range(0, len(names), BATCH):
            part = names[start:start + BATCH]
            added += int(await self._redis().zadd(self._key, dict.fromkeys(part, 0), nx=True))
            self._known.update(part)
        return added

    def known(self, name: str) -> bool:
        """Whether this process already knows the index lists `name` (no round trip)."""
        return name in self._memory if self._memory is not None else name in self._known

    async def remove(self, name: str) -> None:
        """`name` holds no `index.json` any more (its remover holds the repository's lock).
        Never fails its caller (GC): with Redis down, the next sweep removes it."""
        if self._memory is not None:
            self._memory.remove(name)
            if self._memory.journal is not None:
                self._memory.journal.append(name, False)
            return
        self._known.discard(name)
        try:
            await self._redis().zrem(self._key, name)
        except RedisError as exc:
            if self._say.due("remove"):
                log.warning("repository index of store %s: could not remove %s (%s); the sweep will",
                            self.route or "/", name, exc)

    async def ensure_built(self) -> None:
        """The walk of the store this process owes the index once, shared by whoever asks
        while it runs; a walk that failed (storage down) is tried again by the next caller."""
        if self._built and self._caught_up():
            return
        self._built = False
        if self._build is None or self._build.done():
            self._build = asyncio.ensure_future(self._first_build())
        try:
            await asyncio.shield(self._build)
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def _first_build(self) -> None:
        journal = self._memory.journal if self._memory is not None else None
        if journal is not None:
            journal.start()  # what other processes change during the walk is applied after it
        await self.verify(await self._walk())
        self._built = self._caught_up()

    def _caught_up(self) -> bool:
        """Apply what other processes sharing the store without Redis journaled since the last
        look; False when the journal cannot tell (replaced): the store must be walked again."""
        if self._memory is None or self._memory.journal is None:
            return True
        news = self._memory.journal.news()
        if news is None:
            return False
        for change in news:
            if not is_valid_name(change.name):
                continue
            if change.added:
                self._memory.add([change.name])
            else:
                self._memory.remove(change.name)
        return True

    async def verify(self, walked: list[str]) -> tuple[int, int]:
        """Bring the index in line with a walk of the store; returns (added, removed)."""
        found = sorted(n for n in walked if is_valid_name(n))
        added = await self._add(found)
        present = set(found)
        removed = 0
        try:
            listed = await self._after(None, None, checked=False)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        for name in [n for n in listed if n not in present]:
            # Listed but not walked: gone, or created after the walk passed it. Look again
            # under its lock, which whoever creates or removes it holds.
            async with self.locks.hold(f"index:{name}"):
                if not await self._exists(name):
                    await self.remove(name)
                    removed += 1
        if self._memory is None:
            await self._redis().zadd(self._key, {BUILT: 0})
        if self._built and (added or removed):
            REPOSITORY_INDEX_CORRECTIONS.labels(self.route or "/", "added").inc(added)
            REPOSITORY_INDEX_CORRECTIONS.labels(self.route or "/", "removed").inc(removed)
            log.warning("repository index of store %s was out of date: %d added, %d removed (changed "
                        "outside this registry?)", self.route or "/", added, removed)
        return added, removed

    async def _exists(self, name: str) -> bool:
        try:
            await self.driver.stat(index_path(name))
        except PathNotFound:
            return False
        return True

    # -- reading -----------------------------------------------------------------------

    async def after(self, last: str | None, count: int | None) -> list[str]:
        """Up to `count` names (all with None) that sort after `last`, in order."""
        try:
            try:
                return await self._after(last, count, checked=True)
            except _Lost:
                log.warning("repository index of store %s: Redis no longer holds it (flushed, restarted "
                            "empty or failed over?); walking the store again", self.route or "/")
                REPOSITORY_INDEX_REBUILDS.labels(self.route or "/").inc()
                self._built = False
                self._known.clear()
                await self.ensure_built()
                return await self._after(last, count, checked=False)
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def _after(self, last: str | None, count: int | None, checked: bool) -> list[str]:
        if self._memory is not None:
            return self._memory.all() if last is None and count is None else \
                self._memory.after(last, count if count is not None else 1 << 62)
        low = f"({last if last is not None else BUILT}"  # after the mark, which sorts first
        pipe = self._redis().pipeline(transaction=False)
        pipe.zscore(self._key, BUILT)
        if count is None:
            pipe.zrangebylex(self._key, low, "+")
        else:
            pipe.zrangebylex(self._key, low, "+", start=0, num=count)
        mark, raw = await pipe.execute()
        if checked and mark is None:
            raise _Lost
        return [r.decode() for r in raw]

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()
