"""Scrub: re-read what a store holds and report whatever no longer matches its name.

The push path hashes a blob once, on arrival, so bit rot, a truncated copy or a file
deleted behind the registry's back stay invisible until a client pulls them.  A scrub pass
re-hashes every blob file of a repository against the digest it is named by, and checks
that every manifest listed in `index.json` (and every child of a listed index) still finds
each blob it references, at the size its descriptor promises.

Findings go into one JSON report written through the store's driver at `REPORT_PATH`,
outside every layout (a name starting with `.` is never a repository), so the CLI, the API
and the worker read the same report whatever the backend.  The report is saved after each
repository, and a full pass that was killed is resumed, not restarted, by the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .blobstore import BlobRef
from .digests import Digest, new_hasher
from .errors import DATA_FAULTS, RegistryError
from .layout import INDEX_FILE
from .registry.catalog import list_layouts
from .registry.index import Descriptor, Draft
from .registry.manifest_doc import parse_manifest_async
from .registry.manifests import MAX_MANIFEST_BYTES, ManifestInfo, Ref
from .registry.store import Store
from .scrub_report import Finding, Problem, ScrubReport, load_report, save_report
from .storage import FileInfo, PathNotFound

log = logging.getLogger("ocistore.scrub")

# Hashing a chunk larger than this in a thread keeps the event loop serving the API.
THREAD_HASH = 256 << 10

Progress = Callable[[int], None]


class _Pacer:
    """Sleeps as bytes go by so the average rate since the start stays at or under a limit.

    Without a limit it still yields once per chunk: reads of small files never block, so
    without it a scrub of many small blobs would hold the event loop it shares with the API.
    """

    def __init__(self, bytes_per_s: float | None) -> None:
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError(f"scrub pace must be positive, not {bytes_per_s}")
        self.rate = bytes_per_s
        self.start = time.monotonic()
        self.done = 0

    async def consumed(self, n: int) -> None:
        self.done += n
        ahead = self.done / self.rate - (time.monotonic() - self.start) if self.rate else 0.0
        await asyncio.sleep(max(ahead, 0.0))


def _finding(repo: str, digest: str, problem: Problem, detail: str) -> Finding:
    now = time.time()
    return Finding(repo, digest, problem.value, detail, now, now)


def _parse_digest(text: Any) -> Digest | None:
    if not isinstance(text, str):
        return None
    try:
        return Digest.parse(text)
    except RegistryError:
        return None


def _descriptor_fault(desc: Any) -> str | None:
    """Why an index.json entry cannot be followed, or None when it can."""
    if not isinstance(desc, dict):
        return "is not an object"
    if _parse_digest(desc.get("digest")) is None:
        return f"has an invalid digest {desc.get('digest')!r}"
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"has an invalid size {size!r}"
    return None


class _ReferenceCheck:
    """Follows manifest descriptors to everything they reach, checking each digest once."""

    def __init__(self, store: Store, repo: str) -> None:
        self.store = store
        self.repo = repo
        self.found: list[Finding] = []
        self.seen: set[str] = set()
        # digest -> its size, following dedupe references; None when absent.
        self.found_at: dict[str, int | None] = {}

    async def run(self, manifests: list[Descriptor]) -> list[Finding]:
        # Faulty entries are the index check's finding; there is nothing here to follow.
        stack = [(Ref(d["digest"], d["size"]), INDEX_FILE) for d in manifests if _descriptor_fault(d) is None]
        while stack:
            ref, holder = stack.pop()
            if ref.digest in self.seen:
                continue
            self.seen.add(ref.digest)
            info = await self._manifest(ref, holder)
            if info is None:
                continue
            for blob in (*([info.config] if info.config else []), *info.blobs):
                if not blob.foreign:  # foreign layers live elsewhere by design
                    await self._present(blob, f"manifest {ref.digest}")
            stack.extend((child, f"manifest {ref.digest}") for child in info.children)
        return self.found

    async def run_draft(self, draft: Draft) -> list[Finding]:
        return await self.run(draft.items)

    def _flag(self, digest: str, problem: Problem, detail: str) -> None:
        self.found.append(_finding(self.repo, digest, problem, detail))

    async def _present(self, ref: Ref, holder: str) -> int | None:
        """The size of the blob `ref` names (None when absent), flagging absence or a wrong size."""
        digest = ref.digest
        if digest not in self.found_at:
            found = await self.store.blobs.find(self.repo, Digest.parse(digest))
            self.found_at[digest] = found.info.size if found else None
        size = self.found_at[digest]
        if size is None:
            self._flag(digest, Problem.MISSING_BLOB, f"referenced by {holder}, absent from the repository")
            return None
        if size != ref.size:
            self._flag(digest, Problem.SIZE_MISMATCH, f"{holder} says {ref.size} bytes, the blob has {size}")
        return size

    async def _manifest(self, ref: Ref, holder: str) -> ManifestInfo | None:
        """The manifest `ref` names, parsed from the bytes on storage; None when absent or unreadable.

        Never taken from the registry's parse memo, which would hide damage done on storage.
        A document that does not parse (too deep, not UTF-8, duplicate keys...) is a finding.
        """
        size = await self._present(ref, holder)
        if size is None:
            return None
        digest = ref.digest
        if size > MAX_MANIFEST_BYTES:
            self._flag(digest, Problem.UNREADABLE_MANIFEST, f"{size} bytes, more than any manifest may have")
            return None
        try:
            body = await self.store.blobs.read_small(self.repo, Digest.parse(digest), MAX_MANIFEST_BYTES)
            if body is None:
                self._flag(digest, Problem.MISSING_BLOB, f"referenced by {holder}, absent from the repository")
                return None
            return await parse_manifest_async(body, None)
        except RegistryError as exc:
            self._flag(digest, Problem.UNREADABLE_MANIFEST, f"listed by {holder}: {exc.detail}")
        return None


class _RepositoryScrub:
    """One full look at one repository: what it observed, before that goes into the report."""

    def __init__(self, store: Store, repo: str, report: ScrubReport, pacer: _Pacer,
                 progress: Progress | None) -> None:
        self.store = store
        self.repo = repo
        self.report = report
        self.pacer = pacer
        self.progress = progress
        self.found: list[Finding] = []

    def _flag(self, digest: str, problem: Problem, detail: str) -> None:
        self.found.append(_finding(self.repo, digest, problem, detail))

    async def check_index(self) -> list[Descriptor]:
        """The manifests index.json lists, flagging the file when it is absent or malformed."""
        try:
            idx = await self.store.index.read(self.repo)
        except RegistryError as exc:
            self._flag("", Problem.CORRUPT_INDEX, str(exc.detail))
            return []
        if idx is None:
            return []  # blobs that never received a manifest: there is no index to check
        listed = idx.doc.get("manifests")
        if not isinstance(listed, list):
            self._flag("", Problem.CORRUPT_INDEX, f"{INDEX_FILE} has no list of manifests")
            return []
        for i, desc in enumerate(listed):
            fault = _descriptor_fault(desc)
            if fault is not None:
                digest = desc.get("digest") if isinstance(desc, dict) else None
                self._flag(digest if isinstance(digest, str) else "", Problem.CORRUPT_INDEX,
                           f"{INDEX_FILE} manifests[{i}] {fault}")
        return idx.manifests

    async def check_references(self, manifests: list[Descriptor]) -> None:
        found = await _ReferenceCheck(self.store, self.repo).run(manifests)
        if found:
            # Confirm under the repository's lock: a look without it can catch a GC or a
            # manifest delete half done.
            found = await self.store.index.update(self.repo, _ReferenceCheck(self.store, self.repo).run_draft)
        self.found.extend(found)

    async def check_blobs(self) -> None:
        older_than = time.time() - self.store.config.gc_delay
        blobs = self.store.blobs
        for stray in (*await self.store.stray_temporaries(self.repo, older_than),
                      *await blobs.strays(self.repo, older_than)):
            self._flag(stray.path[len(self.repo) + 1:], Problem.STRAY_TEMPORARY,
                       f"{stray.size} bytes left by an interrupted write; GC removes it")
        async for digest, info in blobs.files(self.repo):
            if blobs.policy.is_placeholder(str(digest), info.size):
                # A dedupe reference: its bytes are hashed where they live, the original. With
                # dedupe switched off and the reconcile pending it cannot be followed: not a finding.
                if blobs.holders is None:
                    continue
                if await blobs.resolve(str(digest), info.path, info) is None:
                    self._flag(str(digest), Problem.MISSING_BLOB, "a dedupe reference whose original is gone")
                continue
            await self._rehash(info, digest)

    async def _rehash(self, info: FileInfo, digest: Digest) -> None:
        """Re-hash one copy, and keep the damage register (what the API refuses to serve) in step."""
        try:
            computed, size = await self._hash(BlobRef(info.path, info), digest.algorithm)
        except PathNotFound:
            return  # collected by GC since the walk listed it
        except OSError as exc:
            self._flag(str(digest), Problem.UNREADABLE_BLOB, f"reading failed: {exc}")
            return
        self.report.blobs_checked += 1
        self.report.bytes_hashed += size
        key = str(digest)
        if computed != digest.encoded:
            detail = f"its {size} bytes hash to {digest.algorithm}:{computed}"
            self._flag(key, Problem.DIGEST_MISMATCH, detail)
            await self.store.blobs.record_damage(key, info, detail)
        else:
            await self.store.blobs.clear_damage(key, info)

    async def _hash(self, blob: BlobRef, algorithm: str) -> tuple[str, int]:
        """Hex digest and length of a file, read as a stream so memory stays flat."""
        hasher = new_hasher(algorithm)
        size = 0
        async for chunk in self.store.blobs.read(blob):
            if len(chunk) > THREAD_HASH:
                await asyncio.to_thread(hasher.update, chunk)
            else:
                hasher.update(chunk)
            size += len(chunk)
            if self.progress is not None:
                self.progress(len(chunk))
            await self.pacer.consumed(len(chunk))
        return hasher.hexdigest(), size


async def scrub_repository(store: Store, repo: str, report: ScrubReport, *,
                           pace_bytes_per_s: float | None = None, progress: Progress | None = None) -> None:
    """Check one repository fully and make what was found its findings in `report`.

    Logs a warning per new problem and a note per resolved one, so every caller gets them.
    `progress(n)` is called as n more bytes are hashed; `pace_bytes_per_s` caps the rate.
    """
    scrub = _RepositoryScrub(store, repo, report, _Pacer(pace_bytes_per_s), progress)
    await scrub.check_references(await scrub.check_index())
    await scrub.check_blobs()
    new, resolved = report.settle(repo, scrub.found)
    for f in new:
        log.warning("scrub: %s: %s %s: %s", f.repo, f.problem, f.digest or INDEX_FILE, f.detail)
    for f in resolved:
        log.info("scrub: %s: %s %s is resolved", f.repo, f.problem, f.digest or INDEX_FILE)


async def scrub_store(store: Store, *, repo: str | None = None, pace_bytes_per_s: float | None = None,
                      progress: Progress | None = None, on_total: Progress | None = None) -> ScrubReport:
    """One pass over every repository of the store (or only `repo`); returns the saved report.

    The report is saved after each repository.  Only a pass over every repository counts as
    a pass: it resumes after the last repository a killed pass finished, and at its end
    forgets the findings of repositories that no longer exist.  With `on_total`, the blob
    files to hash are listed first and `on_total(bytes)` is told their size before any is.
    """
    report = await load_report(store)
    if repo is not None:
        if on_total is not None:
            on_total(await _bytes_to_hash(store, {repo}, repo))
        await scrub_repository(store, repo, report, pace_bytes_per_s=pace_bytes_per_s, progress=progress)
        await save_report(store, report)
        return report
    report.begin_pass(time.time())
    clock = time.monotonic()
    names = await list_layouts(store)
    pending = [name for name in names if report.pass_cursor is None or name > report.pass_cursor]
    if on_total is not None:
        on_total(await _bytes_to_hash(store, set(pending)))
    for name in pending:
        try:
            await scrub_repository(store, name, report, pace_bytes_per_s=pace_bytes_per_s, progress=progress)
        except DATA_FAULTS:  # one bad repository must not stop the pass over all the others
            log.exception("scrub: %s failed; its findings stay as they were, going on with the next", name)
        report.pass_cursor = name
        report.pass_seconds += time.monotonic() - clock
        clock = time.monotonic()
        await save_report(store, report)
    report.forget_all_but(set(names))
    report.pass_seconds += time.monotonic() - clock
    report.finish_pass(time.time())
    await save_report(store, report)
    return report


async def _bytes_to_hash(store: Store, repos: set[str], under: str | None = None) -> int:
    """The size of the blob files a pass over `repos` re-hashes (dedupe references are not)."""
    blobs = store.blobs
    return sum([f.size async for name, digest, f in blobs.every_file(under)
                if name in repos and not blobs.policy.is_placeholder(digest, f.size)])
