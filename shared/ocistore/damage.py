"""The damage register: stored copies whose bytes scrub found not to hash to their digest.

A damaged copy must neither be served as if whole nor be linked to by the next push of its
digest, which instead replaces it (the repair).  A copy is named by its digest and its
physical identity (`FileInfo.ident`: the inode on disk, the ETag on S3), so a repaired copy,
being new bytes with a new identity, is no longer damaged without anyone having to clear
anything, and every holder hard-linked to one damaged inode is covered at once.

Scrub records markers, one object per digest under `.ocistore/damaged/`, outside every
layout; each process keeps a snapshot of them, re-listed at most every `REFRESH` seconds, so
a blob read costs a set lookup, and nothing at all while no damage is known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from . import jsondoc
from .storage import PathNotFound, StorageDriver

log = logging.getLogger("ocistore.damage")

DAMAGE_DIR = ".ocistore/damaged"
REFRESH = 5.0
# A marker lists the damaged copies of one digest: a few hundred bytes each.
MARKER_BYTES = 4 << 20


def _marker(digest: str) -> str:
    return f"{DAMAGE_DIR}/{digest.replace(':', '-')}"


class DamageRegister:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self._known: dict[str, frozenset[str]] = {}
        self._loaded_at = -REFRESH
        self._refreshing: asyncio.Task[None] | None = None

    async def is_damaged(self, digest: str, ident: str) -> bool:
        idents = await self._damaged(digest)
        return idents is not None and ident in idents

    async def any_damaged(self, digest: str) -> bool:
        """Whether any copy of the digest is known damaged: while none is, a push need not look
        at the copies there are to know it repairs nothing."""
        return await self._damaged(digest) is not None

    async def _damaged(self, digest: str) -> frozenset[str] | None:
        if time.monotonic() - self._loaded_at >= REFRESH:
            await self._refresh()
        return self._known.get(digest)

    async def _refresh(self) -> None:
        """One listing per interval, shared by every request that finds the snapshot old."""
        if self._refreshing is None or self._refreshing.done() or self._refreshing.get_loop() is not _loop():
            self._refreshing = asyncio.get_running_loop().create_task(self._load())
        await asyncio.shield(self._refreshing)

    async def _load(self) -> None:
        try:
            names = await self.driver.list(DAMAGE_DIR)
        except PathNotFound:
            names = []
        known: dict[str, frozenset[str]] = {}
        for name in names:
            if name.endswith("/") or "-" not in name:
                continue
            doc = await self._read(name.replace("-", ":", 1))
            if doc:
                known[name.replace("-", ":", 1)] = frozenset(doc)
        self._known = known
        self._loaded_at = time.monotonic()

    async def _read(self, digest: str) -> dict[str, Any]:
        try:
            doc = jsondoc.loads(await self.driver.get_content(_marker(digest)), max_bytes=MARKER_BYTES)
        except (PathNotFound, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    async def record(self, digest: str, ident: str, path: str, detail: str) -> None:
        """Mark a copy damaged.  Callers hold the digest's lock (the marker is read, then written)."""
        doc = await self._read(digest)
        if ident in doc:
            return
        doc[ident] = {"path": path, "detail": detail, "found": time.time()}
        await self.driver.put_content(_marker(digest), json.dumps(doc).encode())
        self._known[digest] = frozenset(doc)

    async def clear(self, digest: str, idents: set[str] | None = None) -> None:
        """Forget damaged copies of a digest (all of them when `idents` is None); under its lock."""
        doc = await self._read(digest)
        if not doc:
            self._known.pop(digest, None)
            return
        kept = {} if idents is None else {k: v for k, v in doc.items() if k not in idents}
        if kept == doc:
            return
        if kept:
            await self.driver.put_content(_marker(digest), json.dumps(kept).encode())
            self._known[digest] = frozenset(kept)
        else:
            try:
                await self.driver.delete(_marker(digest))
            except PathNotFound:
                pass
            self._known.pop(digest, None)


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
