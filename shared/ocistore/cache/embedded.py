"""The embedded cache: SQLite at `<rootDirectory>/cache.db`.

WAL mode and a busy timeout make it safe for the API replicas and workers of one host
sharing the disk.  SQLite blocks, so every statement runs on one thread of the cache's
own; the original of a digest is its oldest row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
FILE_NAME = "cache.db"
FALLBACK_NAME = "ocistore-cache.db"
log = logging.getLogger("ocistore.cache")


def _is_sqlite_or_absent(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except FileNotFoundError:
        return True
    return header in (b"", b"SQLite format 3\x00")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL,
    path TEXT NOT NULL,
    UNIQUE (digest, path)
)
"""


class EmbeddedCache:
    name = "embedded"

    def __init__(self, root_directory: str) -> None:
        os.makedirs(root_directory, exist_ok=True)
        self.path = os.path.join(root_directory, FILE_NAME)
        if not _is_sqlite_or_absent(self.path):
            # zot keeps a BoltDB there: leave it alone (reconcile rebuilds what we need).
            log.warning("%s is not ours (zot's BoltDB?): the dedupe cache goes to %s", self.path, FALLBACK_NAME)
            self.path = os.path.join(root_directory, FALLBACK_NAME)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocistore-cache")
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(self._conn()))

    async def add(self, digest: str, path: str) -> None:
        await self._run(lambda db: db.execute(
            "INSERT OR IGNORE INTO holders (digest, path) VALUES (?, ?)", (digest, path)))

    async def original(self, digest: str) -> str | None:
        def first(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT path FROM holders WHERE digest = ? ORDER BY seq LIMIT 1", (digest,)).fetchone()
            return str(row[0]) if row else None

        return await self._run(first)

    async def holders(self, digest: str) -> list[str]:
        def all_of(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT path FROM holders WHERE digest = ? ORDER BY seq", (digest,)).fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(all_of)

    async def remove(self, digest: str, path: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM holders WHERE digest = ? AND path = ?", (digest, path)))

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._run(shut)
        self._executor.shutdown(wait=False)
