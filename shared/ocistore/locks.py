"""Named mutual exclusion and short claims, across coroutines, threads and processes.

Locks guard a repository's `index.json` and GC (`index:<repo>`).  On one host they are
`flock`s on files, which also serialise the API and the workers of the single-process
mode (they run on different event loops).  With Redis, they are Redis locks, so replicas
on several hosts never lose each other's tags.  When Redis cannot be reached the host's
file lock is used instead: pushes keep working, with the outage logged.

Claims (`try_claim`) collapse repeated work: the first claimant of a name wins for `ttl`
seconds (a GC already scheduled for a repository, the periodic sweep of this interval).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from .config import Config

log = logging.getLogger("ocistore.locks")

STRIPES = 512
# Kinds whose locks are held for as long as a request streams a body: a file each, since a
# striped file shared with an unrelated session would make that session wait for the body.
OWN_FILE_KINDS = frozenset({"upload"})


class LockTimeout(TimeoutError):
    """The lock stayed held by another owner for longer than the caller would wait."""


class Locks(Protocol):
    def hold(self, name: str, wait: float | None = None) -> AbstractAsyncContextManager[None]:
        """Exclusive ownership of `name`; with `wait`, LockTimeout when not had within that many
        seconds (only the wait is bounded, never the body)."""
        ...

    async def forget(self, name: str) -> None:
        """Drop what a lock of a name that will never be used again keeps (an ended upload's)."""
        ...

    async def try_claim(self, name: str, ttl: float) -> bool: ...

    async def release_claim(self, name: str) -> None: ...


def default_lock_dir(identity: str) -> str:
    """One directory per store identity, shared by every process of this host."""
    tag = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "ocistore-locks", tag)


class FileLocks:
    """`flock` per name; claims are files whose expiry is their content."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, name: str) -> str:
        """A fixed set of files per kind of lock (the part of the name before `:`).

        Creating a file costs more than the lock itself, so names share striped files
        instead of one file each; striping within a kind never nests a lock in itself,
        since only locks of different kinds are ever held together.
        """
        kind = name.split(":", 1)[0]
        if kind in OWN_FILE_KINDS:
            return os.path.join(self.directory, f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:40]}.lock")
        stripe = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % STRIPES
        return os.path.join(self.directory, f"{kind}-{stripe}.lock")

    async def forget(self, name: str) -> None:
        """Unlink an own-file lock.  Safe only for a name never used again: a waiter then holds
        the unlinked file and a newcomer a new one, and both find the thing they guard gone."""
        if name.split(":", 1)[0] in OWN_FILE_KINDS:
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                pass

    def _claim_path(self, name: str) -> str:
        """Claims are few (one per repository awaiting GC, one per ticker): a file each."""
        return os.path.join(self.directory, "claim-" + hashlib.sha256(name.encode()).hexdigest()[:40])

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[None]:
        # Waiters poll with a non-blocking flock: a thread blocked in flock per waiter could fill
        # the executor that the holder itself needs to finish (and then never release).
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = None if wait is None else time.monotonic() + wait
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LockTimeout(name) from None
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.02)
            yield
        finally:
            os.close(fd)

    async def try_claim(self, name: str, ttl: float) -> bool:
        path = self._claim_path(name)
        async with self.hold(f"claim:{name}"):
            try:
                with open(path) as f:
                    if float(f.read() or 0) > time.time():
                        return False
            except (FileNotFoundError, ValueError):
                pass
            with open(path, "w") as f:
                f.write(str(time.time() + ttl))
        return True

    async def release_claim(self, name: str) -> None:
        try:
            os.unlink(self._claim_path(name))
        except FileNotFoundError:
            pass


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class RedisLocks:
    """Redis `SET NX PX` locks with a token, renewed while held, released only by their owner."""

    def __init__(self, url: str, fallback: FileLocks, ttl: float = 30.0, prefix: str = "ocistore:") -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._fallback = fallback
        self._ttl_ms = int(ttl * 1000)
        self._prefix = prefix
        self._warned = threading.Event()

    def _down(self, exc: Exception) -> None:
        if not self._warned.is_set():
            log.warning("redis unreachable (%s): using this host's locks until it returns", exc)
            self._warned.set()

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[None]:
        import redis.exceptions

        key, token = f"{self._prefix}lock:{name}", uuid.uuid4().hex
        try:
            await self._acquire(key, token, wait)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            self._down(exc)
            async with self._fallback.hold(name, wait):
                yield
            return
        self._warned.clear()
        renewer = asyncio.create_task(self._renew(key, token))
        try:
            yield
        finally:
            renewer.cancel()
            try:
                await self._redis.eval(_RELEASE, 1, key, token)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                self._down(exc)

    async def forget(self, name: str) -> None:
        await self._fallback.forget(name)

    async def _acquire(self, key: str, token: str, wait: float | None) -> None:
        deadline = None if wait is None else time.monotonic() + wait
        pause = 0.001
        while not await self._redis.set(key, token, nx=True, px=self._ttl_ms):
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(key)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _renew(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._redis.eval(_RENEW, 1, key, token, self._ttl_ms)
            except Exception as exc:
                log.warning("could not renew lock %s: %s", key, exc)

    async def try_claim(self, name: str, ttl: float) -> bool:
        import redis.exceptions

        try:
            return bool(await self._redis.set(f"{self._prefix}claim:{name}", "1", nx=True, px=int(ttl * 1000)))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            self._down(exc)
            return await self._fallback.try_claim(name, ttl)

    async def release_claim(self, name: str) -> None:
        import redis.exceptions

        try:
            await self._redis.delete(f"{self._prefix}claim:{name}")
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            self._down(exc)
        await self._fallback.release_claim(name)


def locks_for(config: Config) -> Locks:
    """The locks every process opening `config` shares: Redis when configured, else this host's files."""
    host = FileLocks(default_lock_dir(os.path.abspath(config.storage.root_directory)))
    return RedisLocks(config.redis_url, host) if config.redis_url else host


class LocalLocks:
    """asyncio locks by name: for tests and tools that own the store alone in one loop."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._claims: dict[str, float] = {}

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            if wait is not None and wait <= 0 and lock.locked():
                raise LockTimeout(name)
            try:
                # wait_for with no time left gives up before even a free lock is taken.
                await asyncio.wait_for(lock.acquire(), None if wait is not None and wait <= 0 else wait)
            except TimeoutError:
                raise LockTimeout(name) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    async def forget(self, name: str) -> None:
        return None  # an unused name's entry is dropped on release

    async def try_claim(self, name: str, ttl: float) -> bool:
        now = time.monotonic()
        if self._claims.get(name, 0.0) > now:
            return False
        self._claims[name] = now + ttl
        return True

    async def release_claim(self, name: str) -> None:
        self._claims.pop(name, None)
