"""A repository's `index.json`: remembered reads and coalesced, fenced writes.

Tags live in `index.json`, so every tag push is a read-modify-write of the whole
file.  Done naively that is O(tags) per push and serialises pushes to one repository.
Instead, concurrent updates of one repository queue up and one writer applies all
pending ones in a single rewrite: under load, many tags cost one write.  Reads are
served from a parsed copy checked against the file's version in one request
(`StorageDriver.read_version`: on S3 a GetObject `If-None-Match` its ETag, answered 304
while it holds), so another process's write is always seen, and a changed file is read
in that same request.  A rewrite remembers the version its write answered with.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import jsondoc
from ..errors import ErrorCode, RegistryError
from ..layout import EMPTY_INDEX, LAYOUT_CONTENT, index_path, layout_path
from ..locks import Locks
from ..mediatypes import REF_NAME
from ..names import is_valid_tag
from ..recent import Recent
from ..storage import FileInfo, PathNotFound, StorageDriver, VersionChanged
from .repositories import RepositoryIndex

log = logging.getLogger("ocistore.index")

T = TypeVar("T")
# Parsed indexes kept: bounded by count and by an estimate of their memory (parsed JSON
# takes about eight times the bytes of its text; the writer's JSON memo as much again).
RECENT_INDEXES = 1024
RECENT_INDEX_BYTES = 64 << 20
INDEX_MEMORY_FACTOR = 12
MAX_INDEX_BYTES = 256 << 20  # what a stored index.json may be: ~1M tags
_INLINE_PARSE = 64 << 10  # larger index.json files are parsed off the event loop
Descriptor = dict[str, Any]
# A mutation edits a Draft of the descriptor list; it may also check or change the
# store, since it runs under the repository's lock (GC, reference checks).
Mutation = Callable[["Draft"], Awaitable[T]]


def tag_of(desc: Descriptor) -> str | None:
    annotations = desc.get("annotations")
    if isinstance(annotations, dict):
        ref = annotations.get(REF_NAME)
        if isinstance(ref, str):
            return ref
    return None


@dataclass
class ImageIndex:
    """The parsed file, with lookups built once per version of it."""

    doc: dict[str, Any]
    manifests: list[Descriptor]
    by_tag: dict[str, Descriptor] = field(default_factory=dict)
    by_digest: dict[str, Descriptor] = field(default_factory=dict)
    _sorted_tags: list[str] | None = None
    # id(descriptor) -> (descriptor, its JSON), so an unchanged descriptor is not re-encoded.
    json_memo: dict[int, tuple[Descriptor, str]] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ImageIndex:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            manifests = []
        idx = cls(doc, [d for d in manifests if isinstance(d, dict) and isinstance(d.get("digest"), str)])
        for d in idx.manifests:
            tag = tag_of(d)
            if tag is not None:
                idx.by_tag[tag] = d
            idx.by_digest.setdefault(d["digest"], d)
        return idx

    def sorted_tags(self) -> list[str]:
        if self._sorted_tags is None:
            self._sorted_tags = sorted(t for t in self.by_tag if is_valid_tag(t))
        return self._sorted_tags


class Draft:
    """The descriptor list under edit, with lookups kept current as it changes.

    Built once per batch of updates, so adding a tag is O(1) even with thousands of tags;
    only a removal walks the list.  Descriptors are replaced, never edited in place: they
    are shared with readers' recent copy of the index.
    """

    def __init__(self, manifests: list[Descriptor]) -> None:
        self.items = list(manifests)
        self.changed = False
        # Blobs a mutation of this batch found the repository holding whole: GC, which removes
        # blobs only under the index lock this batch holds, cannot have removed them since, so
        # the batch's later manifests naming them need not look again.
        self.held: set[str] = set()
        self._by_tag: dict[str, Descriptor] = {}
        self._count: dict[str, int] = {}
        self._untagged: dict[str, int] = {}
        for d in self.items:
            self._note(d, 1)

    def _note(self, d: Descriptor, delta: int) -> None:
        digest, tag = d["digest"], tag_of(d)
        self._count[digest] = self._count.get(digest, 0) + delta
        if tag is None:
            self._untagged[digest] = self._untagged.get(digest, 0) + delta
        elif delta > 0:
            self._by_tag[tag] = d
        elif self._by_tag.get(tag) is d:
            del self._by_tag[tag]

    def tagged(self, tag: str) -> Descriptor | None:
        return self._by_tag.get(tag)

    def count(self, digest: str) -> int:
        return self._count.get(digest, 0)

    def untagged(self, digest: str) -> int:
        return self._untagged.get(digest, 0)

    def add(self, d: Descriptor) -> None:
        self.items.append(d)
        self._note(d, 1)
        self.changed = True

    def remove(self, doomed: Callable[[Descriptor], bool]) -> list[Descriptor]:
        kept: list[Descriptor] = []
        removed: list[Descriptor] = []
        for d in self.items:
            (removed if doomed(d) else kept).append(d)
        if removed:
            self.items = kept
            for d in removed:
                self._note(d, -1)
            # A tag held twice (a foreign layout may do that) is found again in what remains.
            for d in kept:
                tag = tag_of(d)
                if tag is not None and tag not in self._by_tag:
                    self._by_tag[tag] = d
            self.changed = True
        return removed


@dataclass
class _Pending:
    mutate: Mutation[Any]
    future: asyncio.Future[Any]
    after_write: Callable[[], Awaitable[None]] | None
    alone: bool = False


class IndexStore:
    def __init__(self, driver: StorageDriver, locks: Locks, repositories: RepositoryIndex) -> None:
        self.driver = driver
        self.locks = locks
        self.repositories = repositories
        # Parsed indexes of the repositories most used (bounded: a catalog may hold many).
        self._recent: Recent[str, tuple[FileInfo, ImageIndex]] = Recent(RECENT_INDEXES, RECENT_INDEX_BYTES)
        self._pending: dict[str, list[_Pending]] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}

    async def read(self, repo: str) -> ImageIndex | None:
        """The current index of `repo`, or None when it is no repository."""
        return (await self._read(repo))[0]

    async def _read(self, repo: str) -> tuple[ImageIndex | None, FileInfo | None]:
        """The index and the version of the file it was read from (for a fenced rewrite)."""
        path = index_path(repo)
        known = self._recent.get(repo)
        try:
            info, data = await self.driver.read_version(path, known[0] if known else None, MAX_INDEX_BYTES)
        except PathNotFound:
            self._recent.pop(repo)
            return None, None
        if not self.repositories.known(repo):
            # A layout the index does not list (copied in while serving): listed from now on.
            await self.repositories.add(repo)
        if known and info is known[0]:
            return known[1], info
        if data is None:
            raise RegistryError(ErrorCode.MANIFEST_INVALID, f"index.json of {repo}: {info.size} bytes, "
                                f"more than the {MAX_INDEX_BYTES} allowed", message="repository index is corrupt")
        idx = await asyncio.to_thread(_parse, data, repo) if len(data) > _INLINE_PARSE else _parse(data, repo)
        self._remember(repo, info, idx)
        return idx, info

    def _remember(self, repo: str, version: FileInfo, idx: ImageIndex) -> None:
        """Keep a parsed index with the version it is, where the version can be told (an identity)."""
        if version.ident:
            self._recent.put(repo, (version, idx), 1024 + version.size * INDEX_MEMORY_FACTOR)

    async def require(self, repo: str) -> ImageIndex:
        idx = await self.read(repo)
        if idx is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, {"name": repo})
        return idx

    async def update(self, repo: str, mutate: Mutation[T],
                     after_write: Callable[[], Awaitable[None]] | None = None, alone: bool = False) -> T:
        """Apply `mutate` to the repository's manifest list; it may raise to refuse.

        `after_write` runs once the new index is on disk, still under the lock: what must
        disappear only after the index stops listing it (GC's deletions) goes there.
        Updates arriving together share one write, except one made `alone` (GC's sweep,
        which must not decide what is unreferenced in a batch that also adds references).
        """
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(repo, []).append(_Pending(mutate, fut, after_write, alone))
        if repo not in self._writers:
            self._writers[repo] = asyncio.create_task(self._drain(repo))
        return await fut

    async def _drain(self, repo: str) -> None:
        try:
            # One turn of the loop first, so updates arriving together share one write.
            await asyncio.sleep(0)
            while batch := self._pending.pop(repo, None):
                for group in _groups(batch):
                    try:
                        await self._apply(repo, group)
                    except Exception as exc:
                        for item in group:
                            if not item.future.done():
                                item.future.set_exception(exc)
        finally:
            del self._writers[repo]

    async def _apply(self, repo: str, batch: list[_Pending]) -> None:
        async with self.locks.hold(f"index:{repo}") as lease:
            current, version = await self._read(repo)
            created = current is None
            doc = dict(current.doc) if current else dict(EMPTY_INDEX)
            draft = Draft(current.manifests if current else [])
            outcomes: list[tuple[_Pending, Any, BaseException | None]] = []
            for item in batch:
                try:
                    outcomes.append((item, await item.mutate(draft), None))
                except Exception as refused:
                    outcomes.append((item, None, refused))
            # A repository comes into being with its first manifest, never with a mere look at it.
            if draft.changed:
                lease.check()  # a lease lost meanwhile: another writer may hold the index now
            if created and draft.changed:
                await self.driver.put_content(layout_path(repo), LAYOUT_CONTENT)
            if draft.changed:
                doc["manifests"] = draft.items
                doc.setdefault("schemaVersion", 2)
                written = ImageIndex.from_doc(doc)
                data = _serialize(doc, written, current)
                try:
                    stored = await self.driver.replace_content(index_path(repo), data, version)
                except VersionChanged:
                    # Someone wrote the index without holding its lock (a lease lost and taken
                    # over): nothing of this batch is acknowledged; the clients retry.
                    log.error("index.json of %s changed under its lock: batch refused", repo)
                    raise RegistryError(ErrorCode.UNAVAILABLE, {"repository": repo}, headers={"Retry-After": "1"},
                                        message="the repository's index changed during this write: retry") from None
                self._remember(repo, stored or await self.driver.stat(index_path(repo)), written)
                if created:
                    await self.repositories.add(repo)
            for item, _, error in outcomes:
                if error is None and item.after_write is not None:
                    lease.check()  # what goes after the write was decided under this lease
                    await item.after_write()
        for item, value, error in outcomes:
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(value)


def _groups(batch: list[_Pending]) -> list[list[_Pending]]:
    """Consecutive updates share a write; one made `alone` gets a write of its own."""
    groups: list[list[_Pending]] = []
    for item in batch:
        if item.alone or not groups or groups[-1][0].alone:
            groups.append([item])
        else:
            groups[-1].append(item)
    return groups


def _serialize(doc: dict[str, Any], written: ImageIndex, previous: ImageIndex | None) -> bytes:
    """The file's bytes, reusing the JSON of descriptors the previous version already had.

    Rewriting thousands of tags is then a join of remembered strings, not a full dump.
    """
    memo = previous.json_memo if previous else {}
    parts: list[str] = []
    for d in written.manifests:
        hit = memo.get(id(d))
        text = hit[1] if hit is not None and hit[0] is d else json.dumps(d, separators=(",", ":"))
        written.json_memo[id(d)] = (d, text)
        parts.append(text)
    head = json.dumps({k: v for k, v in doc.items() if k != "manifests"}, separators=(",", ":"))
    return f'{head[:-1]},"manifests":[{",".join(parts)}]}}'.encode()


def _parse(data: bytes, repo: str) -> ImageIndex:
    """The stored index, read by the strict reader: a corrupt or hostile file is a typed
    error (MANIFEST_INVALID, "repository index is corrupt"), never a crash."""
    try:
        doc = jsondoc.loads(data, max_bytes=MAX_INDEX_BYTES)
    except jsondoc.DocumentError as exc:
        reason = exc.reason
    else:
        if isinstance(doc, dict):
            return ImageIndex.from_doc(doc)
        reason = "not a JSON object"
    raise RegistryError(ErrorCode.MANIFEST_INVALID, f"index.json of {repo}: {reason}",
                        message="repository index is corrupt")
