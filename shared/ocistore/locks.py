"""Named mutual exclusion and short claims, across coroutines, threads and processes.

Locks guard a repository's `index.json` and GC (`index:<repo>`), an upload session
(`upload:<repo>/<id>`) and a digest's holders (`dedupe:<digest>`); docs/design.md gives
their order.  A store on local disk keeps them as `flock`s on files inside the store, so
every process writing the store, on any host or in any container that mounts it, sees
them.  A store on S3 uses Redis leases when Redis is configured (`redis_locks`), and never
falls back to a lock other replicas cannot see: while Redis is unreachable, writes answer
503 (`LocksUnavailable`) and pulls go on.

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
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .config import Config, StorageConfig
from .layout import UPLOAD_ID_RE, upload_path
from .lease import Lease, LeaseLost, Locks, LocksUnavailable, LockTimeout
from .metrics import LOCK_WAIT
from .names import is_valid_name

__all__ = [
    "FileLocks",
    "Lease",
    "LeaseLost",
    "LocalLocks",
    "LockTimeout",
    "Locks",
    "LocksUnavailable",
    "locks_for",
]

log = logging.getLogger("ocistore.locks")

STRIPES = 512
STORE_LOCK_DIR = ".ocistore/locks"
# Kinds whose locks are held for as long as a request streams a body: a file each, since a
# striped file shared with an unrelated session would make that session wait for the body.
OWN_FILE_KINDS = frozenset({"upload"})
UPLOAD_KIND = "upload:"


def default_lock_dir(identity: str) -> str:
    """One directory per store identity, shared by every process of this host."""
    tag = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "ocistore-locks", tag)


class FileLocks:
    """`flock` per name; claims are files whose expiry is their content.

    With `store_root` (a store on local disk), an upload session's lock is a flock on the
    session's own file rather than on a lock file: creating a file costs far more than the
    lock (800 µs of kernel time on the ext4 it was measured on: most of a small push), and
    the session file exists for exactly as long as the lock has something to guard. A lock on
    a session that does not exist (made up, finished or reaped) holds nothing: its holder
    finds the session gone, as it would under a lock.
    """

    def __init__(self, directory: str, store_root: str | None = None) -> None:
        self.directory = directory
        self.store_root = store_root
        os.makedirs(directory, exist_ok=True)

    def _session_file(self, name: str) -> str | None:
        """The session file an upload lock is, in a local store; None for every other lock."""
        if self.store_root is None or not name.startswith(UPLOAD_KIND):
            return None
        repo, _, upload_id = name[len(UPLOAD_KIND):].rpartition("/")
        if not is_valid_name(repo) or not UPLOAD_ID_RE.fullmatch(upload_id):
            return None  # never a path from a name that is not a session's: a lock file of its own
        return os.path.join(self.store_root, upload_path(repo, upload_id))

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
        if name.split(":", 1)[0] in OWN_FILE_KINDS and self._session_file(name) is None:
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                pass

    def _claim_path(self, name: str) -> str:
        """Claims are few (one per repository awaiting GC, one per ticker): a file each."""
        return os.path.join(self.directory, "claim-" + hashlib.sha256(name.encode()).hexdigest()[:40])

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[Lease]:
        # Waiters poll with a non-blocking flock: a thread blocked in flock per waiter could fill
        # the executor that the holder itself needs to finish (and then never release).
        session = self._session_file(name)
        if session is None:
            fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        else:
            try:
                fd = os.open(session, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                yield Lease(name)  # no session: nothing to exclude
                return
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
            yield Lease(name)  # a flock is never lost while its holder lives
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


def locks_for(config: Config, storage: StorageConfig | None = None) -> Locks:
    """The locks every process opening this store shares (the default store's without `storage`).

    A store on local disk keeps its locks in itself (`<rootDirectory>/.ocistore/locks`): every
    process that can write the store can see them, whatever its host's /tmp, and a flock
    cannot expire under a live holder.  A store on S3 has no such place: with Redis configured
    its locks are Redis leases (`RedisLocks`), otherwise files in this host's temp directory,
    which exclude only this host's processes (one host per S3 store without Redis).
    """
    storage = storage or config.storage
    s3 = storage.storage_driver
    if s3 is None:
        root = os.path.abspath(storage.local_root)
        return TimedLocks(FileLocks(os.path.join(root, STORE_LOCK_DIR), store_root=root))
    if config.redis_url:
        from .redis_locks import RedisLocks

        return TimedLocks(RedisLocks(config.redis_url))
    return TimedLocks(FileLocks(default_lock_dir(f"s3:{s3.regionendpoint}:{s3.bucket}:{s3.rootdirectory}")))


class TimedLocks:
    """Any `Locks`, with the wait for each lock observed by kind (`ocistore_lock_wait_seconds`)."""

    def __init__(self, inner: Locks) -> None:
        self.inner = inner

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[Lease]:
        started = time.perf_counter()
        async with self.inner.hold(name, wait) as lease:
            LOCK_WAIT.labels(name.split(":", 1)[0]).observe(time.perf_counter() - started)
            yield lease

    async def forget(self, name: str) -> None:
        await self.inner.forget(name)

    async def try_claim(self, name: str, ttl: float) -> bool:
        return await self.inner.try_claim(name, ttl)

    async def release_claim(self, name: str) -> None:
        await self.inner.release_claim(name)


class LocalLocks:
    """asyncio locks by name: for tests and tools that own the store alone in one loop."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._claims: dict[str, float] = {}

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[Lease]:
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
                yield Lease(name)
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
