"""The commands that walk storage: `gc`, `scrub`, `dedupe --reconcile` and `du`.

Each runs the same algorithm as the workers (`ocistore.gc`, `ocistore.scrub`,
`ocistore.blobstore.reconcile`, `ocistore.usage`), shows a progress bar on a terminal, prints
text or one JSON document (`Output`) and returns the exit status.
"""

from __future__ import annotations

import time
from typing import Any

from ocistore.blobstore import reconcile
from ocistore.commandline import EXIT_FINDINGS, EXIT_OK
from ocistore.errors import RegistryError
from ocistore.gc import collect_or_report
from ocistore.gc_report import GCReport, GCTotals
from ocistore.registry import Registry
from ocistore.registry.catalog import list_layouts
from ocistore.registry.store import Store
from ocistore.scrub import scrub_store
from ocistore.scrub_report import ScrubReport, load_report, report_rows
from ocistore.units import format_bytes
from ocistore.usage import Usage, measure

from .output import Output, plural


class UsageError(Exception):
    """The command line asks for something that is not there (exit status 2)."""


def _route(store: Store) -> str:
    return store.route or "/"


async def _stores_for(registry: Registry, repo: str | None) -> list[Store]:
    """Every store, or the one `repo` routes to once it is known to hold that repository."""
    if repo is None:
        return list(registry.stores.values())
    store = registry.store_for(repo)
    try:
        missing = await store.index.read(repo) is None
    except RegistryError:
        missing = False  # an index.json that does not parse: the command reports it as a finding
    if missing:
        raise UsageError(f"no repository {repo!r}")
    return [store]


# gc


async def gc(registry: Registry, repo: str | None, dry_run: bool, out: Output) -> int:
    verb = "would remove" if dry_run else "removed"
    stores: dict[str, Any] = {}
    totals = GCTotals()
    for store in await _stores_for(registry, repo):
        route = _route(store)
        doc: dict[str, Any] = {"gc": store.config.gc, "gc_delay_seconds": store.config.gc_delay,
                               "repositories": {}, "aborted_multipart_uploads": 0}
        stores[route] = doc
        store_totals = GCTotals()
        if not store.config.gc:
            out.line(f"store {route}: gc is off")
        else:
            names = [repo] if repo else await list_layouts(store)
            with out.progress(f"gc {route}", " repos", total=len(names)) as progress:
                for name in names:
                    report = await collect_or_report(store, name, dry_run=dry_run)
                    progress.advance()
                    store_totals.add(report)
                    doc["repositories"][name] = report.as_dict()
                    for text in _gc_lines(report, verb):
                        out.line(text)
            if not dry_run and not repo:
                aborted = await store.driver.abort_stale_multipart_uploads(store.config.gc_delay)
                doc["aborted_multipart_uploads"] = aborted
                if aborted:
                    out.line(f"store {route}: aborted {plural(aborted, 'abandoned multipart upload')}")
            out.line(f"store {route}: {_gc_summary(store_totals, dry_run)}")
        doc["totals"] = store_totals.as_dict()
        totals += store_totals
    if len(stores) > 1:
        out.line(f"in all: {_gc_summary(totals, dry_run)}")
    out.document({"repository": repo, "dry_run": dry_run, "stores": stores, "totals": totals.as_dict()})
    return EXIT_FINDINGS if totals.errors else EXIT_OK


def _gc_lines(report: GCReport, verb: str) -> list[str]:
    lines = [f"{report.repo}: not collected: {report.error}"] if report.error else []
    lines += [f"{report.repo}: manifest {d} does not parse: nothing collected" for d in report.unreadable]
    held = " (retention.dryRun: kept)" if report.retention_dry_run else ""
    lines += [f"{report.repo}: {verb} tag {t.ref} ({t.digest}): {t.reason}{held}" for t in report.tags]
    for kind, items in (("manifest", report.manifests), ("blob", report.blobs), ("upload", report.uploads),
                        ("temporary file", report.temporaries)):
        lines += [f"{report.repo}: {verb} {kind} {item}" for item in items]
    return lines


def _gc_summary(t: GCTotals, dry_run: bool) -> str:
    removed = ", ".join((plural(t.tags, "tag"), plural(t.manifests, "manifest"), plural(t.blobs, "blob"),
                         plural(t.uploads, "upload"), plural(t.temporaries, "temporary file")))
    failed = f"; {plural(t.errors, 'repository', 'repositories')} not collected" if t.errors else ""
    return (f"{plural(t.repositories, 'repository', 'repositories')}: "
            f"{'would remove' if dry_run else 'removed'} {removed}; "
            f"{'would free' if dry_run else 'freed'} {format_bytes(t.bytes_freed)} logical, "
            f"{format_bytes(t.physical_bytes_freed)} physical; "
            f"gcDelay holds back {format_bytes(t.held_back_bytes)}{failed}")


# scrub


async def scrub(registry: Registry, repo: str | None, pace_bytes_per_s: float | None, out: Output) -> int:
    stores: dict[str, Any] = {}
    problems = 0
    for store in await _stores_for(registry, repo):
        route = _route(store)
        before = await load_report(store)
        started = time.monotonic()
        with out.progress(f"scrub {route}", "B") as progress:
            async with store.locks.hold("scrub:pass"):
                report = await scrub_store(store, repo=repo, pace_bytes_per_s=pace_bytes_per_s,
                                           progress=progress.advance, on_total=progress.set_total)
        checked, hashed = report.blobs_checked - before.blobs_checked, report.bytes_hashed - before.bytes_hashed
        seconds = round(time.monotonic() - started, 3)
        doc = {**_scrub_doc(report, repo), "run": {"blobs_checked": checked, "bytes_hashed": hashed,
                                                   "seconds": seconds}}
        stores[route] = doc
        problems += doc["problems"]
        out.line(f"store {route}: {plural(doc['problems'], 'problem')} ({plural(checked, 'blob')}, "
                 f"{format_bytes(hashed)} hashed in {seconds:.1f}s)")
        for row in doc["findings"]:
            out.line(_finding_line(row))
    out.document({"repository": repo, "stores": stores, "totals": {"problems": problems}})
    return EXIT_FINDINGS if problems else EXIT_OK


async def scrub_report(registry: Registry, out: Output) -> int:
    stores: dict[str, Any] = {}
    problems = 0
    for store in registry.stores.values():
        report = await load_report(store)
        doc = _scrub_doc(report, None)
        stores[_route(store)] = doc
        problems += doc["problems"]
        last = f"last pass {report.last_pass_seconds:.1f}s" if report.last_pass_seconds else "no full pass yet"
        out.line(f"store {_route(store)}: {plural(doc['problems'], 'problem')}, "
                 f"{plural(report.passes, 'pass', 'passes')}, {last}")
        for row in doc["findings"]:
            out.line(_finding_line(row))
    out.document({"stores": stores, "totals": {"problems": problems}})
    return EXIT_FINDINGS if problems else EXIT_OK


def _scrub_doc(report: ScrubReport, repo: str | None) -> dict[str, Any]:
    """A store's scrub report as --json prints it: its findings (of `repo` only, if given) and
    the totals of every pass."""
    rows = report_rows(report, repo)
    return {"problems": len(rows), "findings": rows, "passes": report.passes,
            "blobs_checked": report.blobs_checked, "bytes_hashed": report.bytes_hashed,
            "last_pass_start": report.last_pass_start, "last_pass_end": report.last_pass_end,
            "last_pass_seconds": report.last_pass_seconds}


def _finding_line(row: dict[str, str]) -> str:
    return (f"  {row['repository']}  {row['digest']}  {row['problem']}  {row['detail']}  "
            f"(first seen {row['first_seen']}, last checked {row['last_checked']})")


# dedupe --reconcile


async def reconcile_all(registry: Registry, out: Output) -> int:
    for store in registry.stores.values():
        with out.progress(f"reconcile {_route(store)}", " blobs") as progress:
            async with store.locks.hold("dedupe-reconcile:store"):
                report = await reconcile(store.blobs, progress.advance, progress.set_total)
        out.line(f"store {_route(store)}: dedupe {'on' if report.dedupe else 'off'}: "
                 f"{plural(report.blobs, 'blob')}, {plural(report.digests, 'digest')}, {report.linked} linked, "
                 f"{report.copied} copied back, {report.seconds:.1f}s")
    return EXIT_OK


# du


async def du(registry: Registry, repo: str | None, out: Output) -> int:
    stores: dict[str, Any] = {}
    total = Usage()
    for store in await _stores_for(registry, repo):
        with out.progress(f"du {_route(store)}", " blobs") as progress:
            usage = await measure(store, repo, progress.advance, progress.set_total)
        stores[_route(store)] = usage.as_dict()
        total += usage.total
        out.line(f"store {_route(store)}: {_usage_text(usage.total)} ({plural(usage.total.blobs, 'blob')})")
        for name, u in sorted(usage.repositories.items()):
            out.line(f"  {name}: {_usage_text(u)}")
    if len(stores) > 1:
        out.line(f"in all: {_usage_text(total)} ({plural(total.blobs, 'blob')})")
    out.document({"repository": repo, "stores": stores, "totals": total.as_dict()})
    return EXIT_OK


def _usage_text(u: Usage) -> str:
    return f"logical {format_bytes(u.logical)}, physical {format_bytes(u.physical)}, saved {format_bytes(u.saved)}"
