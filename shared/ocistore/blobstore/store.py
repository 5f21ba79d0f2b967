"""The blob store: the one owner of every file under a repository's `blobs/`.

Uploads, manifests, GC, scrub, usage and mount all go through a `BlobStore`; nothing else
builds a blob's path. It decides where a blob's bytes are (the file itself, or the original
a dedupe reference names), keeps the holder index in step, and takes the digest's lock for
every change of a digest's holders, so a placement, a renewal and a deletion of one digest
are ordered by one lock (docs/design.md, "Locks and their order").
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ..cache import HolderIndex
from ..damage import DamageRegister
from ..digests import Digest
from ..errors import ErrorCode, RegistryError
from ..locks import Lease, Locks, LocksUnavailable, LockTimeout
from ..logs import Sparse
from ..storage import FileInfo, PathNotFound, StorageDriver, is_temporary
from . import placement, removal
from .paths import ALGORITHMS, blob_digest, blob_path, blobs_root, digest_in
from .policy import DedupePolicy

log = logging.getLogger("ocistore.blobs")

# How long a pull waits for a digest's lock to renew the blob's age before going on without.
RENEW_WAIT = 0.5
_DAMAGED_WARNINGS = Sparse()
_UNFOLLOWED = Sparse()


@dataclass(frozen=True)
class BlobRef:
    """Where a repository's blob can be read: its own file, or (a dedupe reference) the original."""

    path: str
    info: FileInfo


class BlobStore:
    def __init__(self, driver: StorageDriver, locks: Locks, damage: DamageRegister,
                 holders: HolderIndex | None, *, gc_delay: float | None) -> None:
        self.driver = driver
        self.locks = locks
        self.damage = damage
        # The holder index (zot's "cache"); None when dedupe is off.
        self.holders = holders
        self.policy = DedupePolicy(driver, holders)
        # A blob a client was told exists is renewed once this old (half of gcDelay); None: no GC.
        self.renew_after = gc_delay / 2 if gc_delay is not None else None

    def lock(self, digest: str, wait: float | None = None) -> AbstractAsyncContextManager[Lease]:
        """The digest's lock. Its name predates the blob store and is kept, so replicas of an
        older version running beside this one still exclude each other."""
        return self.locks.hold(f"dedupe:{digest}", wait)

    # Reading.

    async def resolve(self, digest: str, path: str, info: FileInfo) -> BlobRef | None:
        """Where the bytes of a blob file are: itself, or (a reference) its original; None if nowhere."""
        if info.is_dir:
            return None
        if not self.policy.is_placeholder(digest, info.size):
            return BlobRef(path, info)
        if self.holders is None:
            # Dedupe switched off, the reconcile not done: the holder index is not open, so this
            # reference cannot be followed. Unknown (a client pushes it again), never empty bytes.
            if _UNFOLLOWED.due(digest):
                log.warning("%s is a dedupe reference, unreadable until the dedupe reconcile ends", path)
            return None
        original = await placement.live_original(self, digest, path)
        if original is None:
            log.warning("%s is a reference to %s, whose bytes are gone", path, digest)
            return None
        real = await placement.real(self, digest, original)
        return BlobRef(original, real) if real is not None else None

    async def find(self, repo: str, digest: Digest) -> BlobRef | None:
        """Where the repository's blob is read from; None when it holds none (nor a directory)."""
        located = await self._locate(repo, digest)
        return located[1] if located else None

    async def _locate(self, repo: str, digest: Digest) -> tuple[FileInfo, BlobRef | None] | None:
        """The repository's own blob file, and where its bytes are."""
        path = blob_path(repo, digest)
        try:
            info = await self.driver.stat_file(path)
        except PathNotFound:
            return None
        return info, await self.resolve(str(digest), path, info)

    async def stat(self, repo: str, digest: Digest) -> BlobRef:
        """The blob a client asks for (HEAD, GET, a manifest's reference check); BLOB_UNKNOWN when
        absent, a directory, or damaged.

        A copy scrub found damaged answers as unknown, so a client pushes it again, which
        repairs it, instead of pulling bytes that are not its digest's. A client told a blob
        exists may reference it next, so its age is renewed (only once half of gcDelay has
        passed): GC then leaves it for at least half of gcDelay more.
        """
        located = await self._locate(repo, digest)
        blob = located[1] if located else None
        if located is None or blob is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)})
        held = located[0]
        key = str(digest)
        if await self.damage.is_damaged(key, blob.info.ident):
            if _DAMAGED_WARNINGS.due(key):
                log.warning("%s of %s is damaged in storage (found by scrub): refused until pushed again", key, repo)
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": key},
                                message="blob is damaged in storage: push it again to repair it")
        await self._renew(key, held)
        return blob

    async def _renew(self, digest: str, held: FileInfo) -> None:
        """Renew a blob's age under its digest's lock, if still old once the lock is had (a burst
        of HEADs renews it once), and only if the lock comes quickly: a pull never waits behind
        a long placement, which itself leaves the blob fresh."""
        if self.renew_after is None:
            return
        older_than = time.time() - self.renew_after
        if held.mtime >= older_than:
            return
        try:
            async with self.lock(digest, wait=RENEW_WAIT):
                if (await self.driver.stat_file(held.path)).mtime < older_than:
                    await self.driver.touch(held.path)
        except (LockTimeout, PathNotFound):
            pass
        except LocksUnavailable:
            pass  # pulls go on without the lock service; GC cannot run without it either

    def read(self, blob: BlobRef, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.read_stream(blob.path, offset, length)

    async def open_local(self, blob: BlobRef) -> int | None:
        """An open descriptor of the blob's file, for a zero-copy send (the caller closes it);
        None when the store is not on a local filesystem. Open, it stays whole even if GC
        deletes the path meanwhile."""
        return await self.driver.open_local(blob.path)

    async def read_small(self, repo: str, digest: Digest, max_bytes: int) -> bytes | None:
        """A stored document's bytes (a manifest); None when absent or larger than `max_bytes`.

        The repository's own file is read with its version in one request; only a dedupe
        reference costs a second read, of its original."""
        path = blob_path(repo, digest)
        try:
            info, data = await self.driver.read_version(path, max_bytes=max_bytes)
            blob = await self.resolve(str(digest), path, info)
            if blob is None or blob.info.size > max_bytes:
                return None
            return data if blob.path == path else await self.driver.get_content(blob.path)
        except PathNotFound:
            return None

    # Writing: see placement.

    async def place(self, repo: str, digest: Digest, upload: str, size: int) -> None:
        """Make a verified upload of `size` bytes (a file of the caller's) the repository's blob."""
        await placement.place(self, repo, digest, upload, size)

    async def place_bytes(self, repo: str, digest: Digest, data: bytes) -> None:
        """Make verified bytes held in memory (a small monolithic push) the repository's blob."""
        await placement.place(self, repo, digest, data, len(data))

    async def put_document(self, repo: str, digest: Digest, body: bytes) -> None:
        """Store a verified small document (a manifest), or renew the copy already there."""
        await placement.put_document(self, repo, digest, body)

    async def mount(self, repo: str, digest: Digest, sources: Sequence[str] | None) -> bool:
        """Make `repo` hold a blob that one of the `sources` repositories holds (None: the holder
        index's original); False when none serves it."""
        return await placement.mount(self, repo, digest, sources)

    # Removing: see removal.

    async def delete(self, repo: str, digest: Digest) -> None:
        """A client's DELETE: the repository's blob goes, other holders keep their bytes."""
        try:
            await removal.delete(self, blob_path(repo, digest), None)
        except PathNotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None

    async def discard(self, repo: str, digest: Digest) -> None:
        """A manifest's own file, once its index entry is gone; nothing when already absent."""
        try:
            await removal.delete(self, blob_path(repo, digest), None)
        except PathNotFound:
            pass

    async def collect(self, blob: FileInfo, older_than: float) -> int | None:
        """GC: delete the blob file `files` listed only if, under the digest's lock, it is still no
        younger than `older_than`: the physical bytes freed, None when kept (a push, mount or
        HEAD renewed it)."""
        try:
            return await removal.delete(self, blob.path, older_than)
        except PathNotFound:
            return 0

    async def collect_stray(self, stray: FileInfo, older_than: float) -> None:
        """Remove a temp file `strays` listed, under its digest's lock (a link in progress is one
        for an instant, with the age of the bytes it links), if still that old."""
        digest = blob_digest(stray.path.split(".tmp-", 1)[0])
        if digest is None:
            return
        async with self.lock(digest):
            try:
                if (await self.driver.stat(stray.path)).mtime <= older_than:
                    await self.driver.delete(stray.path)
            except PathNotFound:
                pass

    # Iterating.

    async def files(self, repo: str) -> AsyncIterator[tuple[Digest, FileInfo]]:
        """Every blob file of the repository (not those of a repository nested in `blobs/`)."""
        async for f in self.driver.walk(blobs_root(repo)):
            digest = digest_in(repo, f.path)
            if digest is not None:
                yield digest, f

    async def every_file(self, repo: str | None = None) -> AsyncIterator[tuple[str, str, FileInfo]]:
        """(repository, digest, file) of every blob file of the store, or under `repo`."""
        async for f in self.driver.walk(blobs_root(repo) if repo else ""):
            digest = blob_digest(f.path)
            if digest is not None and (repo is None or f.path.startswith(blobs_root(repo) + "/")):
                yield f.path.rsplit("/blobs/", 1)[0], digest, f

    async def strays(self, repo: str, older_than: float) -> list[FileInfo]:
        """Temp files a killed writer left in the repository's `blobs/<alg>/`, older than `older_than`."""
        found: list[FileInfo] = []
        for algorithm in ALGORITHMS:
            directory = f"{blobs_root(repo)}/{algorithm}"
            try:
                names = await self.driver.list(directory)
            except PathNotFound:
                continue
            for name in names:
                if name.endswith("/") or not is_temporary(name):
                    continue
                try:
                    info = await self.driver.stat(f"{directory}/{name}")
                except PathNotFound:
                    continue
                if info.mtime <= older_than:
                    found.append(info)
        return found

    async def remove_empty(self, repo: str) -> None:
        """Remove the repository's blob directories once empty (GC of an emptied layout)."""
        for directory in (*(f"{blobs_root(repo)}/{a}" for a in ALGORITHMS), blobs_root(repo)):
            await self.driver.remove_empty_dir(directory)

    # Damage found by scrub.

    async def record_damage(self, digest: str, info: FileInfo, detail: str) -> None:
        async with self.lock(digest):
            await self.damage.record(digest, info.ident, info.path, detail)

    async def clear_damage(self, digest: str, info: FileInfo) -> None:
        if await self.damage.is_damaged(digest, info.ident):
            async with self.lock(digest):
                await self.damage.clear(digest, {info.ident})
