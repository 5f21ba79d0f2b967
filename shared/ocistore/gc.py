"""Garbage collection of one repository, as zot does it.

Collected, once older than the store's `gcDelay` (younger things may belong to a push in
flight): manifests that are neither tagged, nor a child of a kept index, nor a referrer
of a kept manifest, nor kept by the repository's retention policy (`ocistore.retention`:
which tags go, whether untagged manifests and referrers of a gone subject do; manifests
are judged by the retention delay, gcDelay unless set); blobs that no kept manifest
references; upload sessions idle for longer than the delay.

The whole pass is one mutation of the repository's `index.json`, so it runs under the
repository's lock and a manifest PUT (whose reference check runs under the same lock)
can never lose a blob it was just told exists.

A stored document GC cannot read (a manifest that does not parse, an `index.json` that is
corrupt) is a finding, never a reason to delete: when a manifest GC keeps does not parse,
what it references is unknown, so nothing of that repository is collected in that pass.
A repository GC cannot look at is logged and skipped, and the pass goes on with the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from . import gc_history
from .config.retention import RetentionPolicy
from .digests import Digest
from .errors import DATA_FAULTS, RegistryError
from .gc_report import GCReport
from .layout import index_path, layout_path, uploads_dir
from .metrics import GC_DURATION, GC_FREED, GC_REMOVED, GC_RUNS
from .registry import uploads
from .registry.catalog import list_layouts
from .registry.index import Descriptor, Draft, tag_of
from .registry.manifests import ManifestInfo, read_manifest_info
from .registry.store import Store
from .registry.tags import keep_reachable
from .retention import Candidate, decide_tags, kept_untagged, policy_for
from .statistics import RepoStatistics
from .storage import FileInfo, PathNotFound

log = logging.getLogger("ocistore.gc")


class _Manifests:
    """Kept manifests' facts, loaded once each; remembers which stored ones do not parse."""

    def __init__(self, store: Store, repo: str) -> None:
        self.store = store
        self.repo = repo
        self.known: dict[str, ManifestInfo] = {}
        self.unreadable: dict[str, str] = {}

    async def load(self, digest: str) -> ManifestInfo | None:
        if digest in self.known:
            return self.known[digest]
        if digest in self.unreadable:
            return None
        try:
            parsed = Digest.parse(digest)
        except RegistryError:
            return None  # an odd entry of a foreign layout: it names no file, so it refers to nothing
        try:
            info = await read_manifest_info(self.store, self.repo, parsed)
        except RegistryError as exc:
            self.unreadable[digest] = str(exc.detail)
            return None
        if info is not None:
            self.known[digest] = info
        return info


async def _closure(manifests: _Manifests, roots: set[str]) -> set[str]:
    """`roots` plus every manifest they reach through index children and referrers."""
    referrers: dict[str, list[str]] = {}
    for digest, meta in manifests.known.items():
        if meta.subject:
            referrers.setdefault(meta.subject, []).append(digest)
    kept = set(roots)
    frontier = list(roots)
    while frontier:
        d = frontier.pop()
        info = await manifests.load(d)
        if info is None:
            continue
        for reached in (*(c.digest for c in info.children), *referrers.get(d, ())):
            if reached not in kept:
                kept.add(reached)
                frontier.append(reached)
    return kept


async def collect_repository(store: Store, repo: str, *, dry_run: bool = False,
                             now: float | None = None) -> GCReport:
    report = GCReport(repo, dry_run=dry_run)
    started = time.perf_counter()
    now = now if now is not None else time.time()
    cutoff = now - store.config.gc_delay
    retention = store.config.retention
    retention_delay = retention.delay or 0.0
    # Manifests (untagged, referrers) are judged by the retention delay, as zot does.
    manifest_cutoff = now - retention_delay
    # A session is abandoned once idle for uploadIdleTimeout, or gcDelay if that is shorter.
    idle_cutoff = now - min(store.config.gc_delay, store.config.upload_idle_timeout)

    async def sweep(draft: Draft) -> None:
        manifests = draft.items
        files = {str(digest): f async for digest, f in store.blobs.files(repo)}
        beside_index = await store.stray_temporaries(repo, cutoff)
        in_blobs = await store.blobs.strays(repo, cutoff)
        report.temporaries = sorted(f.path[len(repo) + 1:] for f in (*beside_index, *in_blobs))
        report.bytes_freed += sum(f.size for f in (*beside_index, *in_blobs))
        report.physical_bytes_freed += sum(f.size for f in (*beside_index, *in_blobs))
        if not dry_run:
            for f in beside_index:
                await _delete_quietly(store, f.path)
            for f in in_blobs:
                await store.blobs.collect_stray(f, cutoff)
        listed = {d["digest"] for d in manifests}
        loaded = _Manifests(store, repo)
        for d in sorted(listed & files.keys()):
            await loaded.load(d)
        policy = policy_for(retention, repo)
        stats = await store.statistics.load(repo) if policy and (policy.keep_tags or policy.keep_untagged) else None
        if policy and policy.keep_tags and stats is not None:
            tags = [(t, d["digest"], stats.of_tag(t, d["digest"])) for d in manifests if (t := tag_of(d)) is not None]
            report.tags = [v for v in decide_tags(policy, tags, now, retention_delay) if not v.keep]
        doomed_tags = {v.ref for v in report.tags}
        tagged = {d["digest"] for d in manifests if (t := tag_of(d)) is not None and t not in doomed_tags}
        young = {d for d in listed if d in files and files[d].mtime > manifest_cutoff}
        kept = await _closure(loaded, tagged | young | _kept_by_policy(policy, manifests, loaded, files, stats, now))
        report.unreadable = sorted(kept & loaded.unreadable.keys())
        for d in report.unreadable:
            log.warning("gc: %s: kept manifest %s does not parse (%s): collecting nothing of the repository",
                        repo, d, loaded.unreadable[d])
        if report.unreadable:
            # What it references is unknown: keep every manifest and blob, until it is fixed or deleted.
            kept |= listed
        if retention.dry_run and (doomed_tags or listed - kept):
            # zot's dryRun: what retention would remove is reported, and no manifest goes.
            report.retention_dry_run = True
            report.manifests = sorted(listed - kept)
            _log_retention(report)
            report.manifests = []
            kept |= listed
            doomed_tags = set()
        referenced = set(kept)
        for d in kept:
            info = loaded.known.get(d)
            if info is not None:
                referenced.update(x.digest for x in (*info.blobs, *info.children))
                if info.config:
                    referenced.add(info.config.digest)
        if report.unreadable:
            referenced |= files.keys()
        doomed_manifests = listed - kept
        report.manifests = sorted(doomed_manifests)
        doomed_files = {d: f for d, f in files.items()
                        if d not in referenced and (d in doomed_manifests or f.mtime <= cutoff)}
        report.blobs = sorted(doomed_files.keys() - doomed_manifests)
        report.bytes_freed += sum(f.size for f in doomed_files.values())
        # In a dry run the estimate; the deletions below count what they really freed.
        blob_estimate = sum(f.size for f in doomed_files.values() if f.links <= 1)
        report.physical_bytes_freed += blob_estimate
        report.held_back_bytes = sum(f.size for d, f in files.items() if d not in referenced and d not in doomed_files)
        sessions, stale = 0, 0
        async for session in uploads.sessions(store, repo):
            sessions += 1
            if session.mtime > idle_cutoff or not (dry_run or await uploads.reap(store, repo, session)):
                continue
            stale += 1
            report.uploads.append(session.path.rsplit("/", 1)[-1])
            report.bytes_freed += session.size
            report.physical_bytes_freed += session.size
        index_age = await _age(store, index_path(repo))
        report.emptied = (len(doomed_manifests) == len(listed) and len(doomed_files) == len(files)
                          and stale == sessions and (index_age is None or index_age <= cutoff))
        if dry_run:
            return
        if not report.retention_dry_run:
            _log_retention(report)
        if doomed_tags:
            keep_reachable(draft, draft.remove(lambda d: tag_of(d) in doomed_tags))
        draft.remove(lambda d: d["digest"] in doomed_manifests)
        doomed.update(doomed_files)
        report.physical_bytes_freed -= blob_estimate
        if stats is not None:
            remaining = {t for d in manifests if (t := tag_of(d)) is not None and t not in doomed_tags}
            await store.statistics.persist(repo, stats, remaining | (listed - doomed_manifests))

    async def delete_doomed() -> None:
        for digest, f in doomed.items():
            freed = await store.blobs.collect(f, older_than=cutoff)
            if freed is None:
                kept.add(digest)
            else:
                report.physical_bytes_freed += freed
        if kept:
            log.info("gc: %s: %d blobs renewed since the sweep looked (pushed, mounted or asked for) kept",
                     repo, len(kept))
            report.blobs = [d for d in report.blobs if d not in kept]
            report.emptied = False
        if report.emptied and not dry_run:
            await _remove_layout(store, repo)
            await store.statistics.forget(repo)

    doomed: dict[str, FileInfo] = {}
    kept: set[str] = set()
    try:
        await store.index.update(repo, sweep, after_write=delete_doomed, alone=True)
    except RegistryError as exc:
        # A corrupt index.json: nothing is known to be unreferenced, so nothing goes.
        report.error = str(exc.detail)
        log.warning("gc: %s cannot be collected: %s", repo, report.error)
    if not dry_run:
        _count(store.route or "/", report, time.perf_counter() - started)
        await gc_history.record(store, report)
    return report


def _count(store: str, report: GCReport, seconds: float) -> None:
    GC_RUNS.labels(store).inc()
    GC_DURATION.labels(store).observe(seconds)
    removed = {"manifest": len(report.manifests), "blob": len(report.blobs), "upload": len(report.uploads),
               "temporary": len(report.temporaries), "tag": 0 if report.retention_dry_run else len(report.tags)}
    for kind, count in removed.items():
        if count:
            GC_REMOVED.labels(store, kind).inc(count)
    GC_FREED.labels(store).inc(report.physical_bytes_freed)


def _kept_by_policy(policy: RetentionPolicy | None, manifests: list[Descriptor], loaded: _Manifests,
                    files: dict[str, FileInfo], stats: RepoStatistics | None, now: float) -> set[str]:
    """Manifests the policy keeps whatever their age: untagged ones (`deleteUntagged: false`,
    `keepUntagged`), referrers whatever became of their subject (`deleteReferrers: false`)."""
    delete_untagged = policy.delete_untagged if policy else True
    delete_referrers = policy.delete_referrers if policy else False
    untagged = {d["digest"] for d in manifests if tag_of(d) is None} - {
        d["digest"] for d in manifests if tag_of(d) is not None}
    referrers = {d for d, info in loaded.known.items() if info.subject}
    kept = set() if delete_referrers else referrers & untagged
    if not delete_untagged:
        kept |= untagged - referrers
    elif policy is not None and policy.keep_untagged is not None and stats is not None:
        candidates = []
        for digest in sorted(untagged - referrers):
            times = stats.of_digest(digest)
            # Without a recorded push (a layout made elsewhere), the manifest file's age stands in.
            pushed = (times.pushed if times else None) or (files[digest].mtime if digest in files else 0.0)
            candidates.append(Candidate(digest, digest, pushed, (times.pulled if times else None) or 0.0))
        kept |= kept_untagged(policy.keep_untagged, candidates, now).keys()
    return kept


def _log_retention(report: GCReport) -> None:
    """One line per removal, with zot's fields, so an operator can tell why each went."""
    for v in report.tags:
        log.info("retention: %s: %s tag %s (%s): %s", report.repo,
                 "would remove" if report.retention_dry_run else "removed", v.ref, v.digest, v.reason)
    if report.retention_dry_run:
        for digest in report.manifests:
            log.info("retention: %s: would remove manifest %s", report.repo, digest)


async def _age(store: Store, path: str) -> float | None:
    try:
        return (await store.driver.stat(path)).mtime
    except PathNotFound:
        return None


async def _remove_layout(store: Store, repo: str) -> None:
    """Take away what made `repo` a repository, under its lock, once nothing is left in it.

    Only the layout's own entries go, and directories only when empty: a nested repository
    (`repo/x`) and anything a push puts there meanwhile stay.
    """
    current = await store.index.read(repo)
    if current is not None and current.manifests:
        return  # a manifest arrived after all (a writer that did not see GC's lock): keep it all
    for path in (index_path(repo), layout_path(repo)):
        await _delete_quietly(store, path)
    await store.blobs.remove_empty(repo)
    for directory in (uploads_dir(repo), repo):
        await store.driver.remove_empty_dir(directory)
    await store.repositories.remove(repo)
    log.info("gc: %s held nothing any more: removed", repo)


async def _delete_quietly(store: Store, path: str) -> None:
    try:
        await store.driver.delete(path)
    except PathNotFound:
        pass


async def collect_or_report(store: Store, repo: str, *, dry_run: bool = False) -> GCReport:
    """`collect_repository`, with a fault of the repository's data turned into the report's
    error: one bad repository must not stop a sweep of all the others."""
    try:
        return await collect_repository(store, repo, dry_run=dry_run)
    except DATA_FAULTS as exc:
        log.exception("gc: %s failed; going on with the next repository", repo)
        return GCReport(repo, dry_run=dry_run, error=f"{type(exc).__name__}: {exc}")


async def collect_store(store: Store) -> AsyncIterator[GCReport]:
    """GC every repository of the store, yielding each report as it is done; then verify the
    repository index against the store, and abort the backend's multipart uploads abandoned
    for longer than `gcDelay`."""
    for name in await list_layouts(store):
        yield await collect_or_report(store, name)
    try:
        await store.repositories.verify(await store.walk_repositories())
    except Exception as exc:  # the index is a shortcut: the next sweep verifies it again
        log.warning("gc: the repository index of store %s was not verified: %s", store.route or "/", exc)
    aborted = await store.driver.abort_stale_multipart_uploads(store.config.gc_delay)
    if aborted:
        log.info("gc: aborted %d abandoned multipart uploads", aborted)
