"""The `ocistore` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ocistore.auth import Access
from ocistore.blobstore import reconcile
from ocistore.config import Config, ConfigError, json_schema, load_config
from ocistore.config.base import redact
from ocistore.durations import format_duration
from ocistore.gc import collect_repository
from ocistore.logs import handle_signals, setup_logging
from ocistore.registry import Registry
from ocistore.registry.catalog import list_layouts
from ocistore.scrub import load_report, report_rows, scrub_store
from ocistore.usage import measure

from .progress import Progress
from .verify import problems_connecting, problems_on_disk


def _load(path: str | None) -> Config:
    try:
        return load_config(path) if path else Config()
    except ConfigError as exc:
        print(f"ocistore: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _access(config: Config) -> Access:
    """The config's access rules, loaded (its htpasswd file read) before anything is served."""
    try:
        return Access(config.http)
    except ConfigError as exc:
        print(f"ocistore: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_serve(args: argparse.Namespace) -> None:
    config = _load(args.config)
    setup_logging(config)
    handle_signals(args.config)
    access = _access(config)
    from .standalone import serve

    serve(config, access)


def _cmd_verify(args: argparse.Namespace) -> None:
    config = _load(args.config)
    found = problems_on_disk(config) + (problems_connecting(config) if args.connect else [])
    if found:
        for problem in found:
            print(f"ocistore: {problem}", file=sys.stderr)
        raise SystemExit(1)
    print(f"{args.config}: ok")
    for route, s in {"/": config.storage, **config.storage.sub_paths}.items():
        cache = (s.cache_driver.name if s.cache_driver else "embedded") if s.dedupe else "none"
        where = f"s3 {s.storage_driver.bucket}/{s.storage_driver.rootdirectory}" if s.storage_driver \
            else f"local {s.root_directory}"
        print(f"  store {route}: {where}, dedupe {s.dedupe} (cache {cache}), gc {s.gc}, "
              f"gcDelay {format_duration(s.gc_delay)}, gcInterval {format_duration(s.gc_interval)}, "
              f"commit {s.commit}")
    tls = config.http.tls
    print(f"  listens on {'https' if tls else 'http'}://{config.http.address}:{config.http.port}"
          + (f" (client certificates from {tls.cacert})" if tls and tls.cacert else ""))
    if config.http.ratelimit and (config.http.ratelimit.rate or config.http.ratelimit.methods):
        rl = config.http.ratelimit
        rates = ([f"{rl.rate}/s"] if rl.rate else []) + [f"{m.method} {m.rate}/s" for m in rl.methods]
        print(f"  rate limits per client: {', '.join(rates)}")
    http = config.http
    if http.auth is not None and http.auth.htpasswd is not None:
        print(f"  logins from {http.auth.htpasswd.path} (failDelay {http.auth.fail_delay}s, realm {http.realm!r})")
    if http.access_control is not None:
        print(f"  access control: {len(http.access_control.repositories)} repository globs, "
              f"admins {', '.join(http.access_control.admin_policy.users) or 'none'}")
    if config.redis_url:
        print(f"  redis {redact('redis', config.redis_url)}")
    if config.scrub.enable:
        print(f"  scrub every {format_duration(config.scrub.interval)}")


def _cmd_schema(args: argparse.Namespace) -> None:
    print(json.dumps(json_schema(), indent=2))


async def _closing(registry: Registry, work: Coroutine[Any, Any, None]) -> None:
    """Run a command's work, then close the registry's connections inside the same loop."""
    try:
        await work
    finally:
        await registry.close()


def _cmd_gc(args: argparse.Namespace) -> None:
    config = _load(args.config)
    registry = Registry.from_config(config)
    asyncio.run(_closing(registry, _gc(registry, args.repo, args.dry_run)))


async def _gc(registry: Registry, repo: str | None, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    freed = 0
    for store in [registry.store_for(repo)] if repo else registry.stores.values():
        if not store.config.gc:
            print(f"store {store.route or '/'}: gc is off")
            continue
        targets = await list_layouts(store)
        if repo is not None and repo not in targets:
            raise SystemExit(f"ocistore gc: no repository {repo!r}")
        repos = [repo] if repo else targets
        progress = Progress("gc", total=len(repos), unit=" repos")
        for name in repos:
            report = await collect_repository(store, name, dry_run=dry_run)
            progress.step()
            freed += report.bytes_freed
            if report.error:
                progress.print(f"{report.repo}: not collected: {report.error}")
            for digest in report.unreadable:
                progress.print(f"{report.repo}: manifest {digest} does not parse: nothing collected")
            for tag in report.tags:
                held = " (retention.dryRun: kept)" if report.retention_dry_run else ""
                progress.print(f"{report.repo}: {verb} tag {tag.ref} ({tag.digest}): {tag.reason}{held}")
            for kind, items in (("manifest", report.manifests), ("blob", report.blobs), ("upload", report.uploads),
                                ("temporary file", report.temporaries)):
                for item in items:
                    progress.print(f"{report.repo}: {verb} {kind} {item}")
        progress.done()
        if not dry_run and not repo:
            aborted = await store.driver.abort_stale_multipart_uploads(store.config.gc_delay)
            if aborted:
                print(f"store {store.route or '/'}: aborted {aborted} abandoned multipart uploads")
    print(f"{verb} {freed} bytes ({freed / 1e6:.1f} MB)")


def _cmd_scrub(args: argparse.Namespace) -> None:
    config = _load(args.config)
    registry = Registry.from_config(config)
    if args.report:
        asyncio.run(_closing(registry, _print_reports(registry)))
    else:
        asyncio.run(_closing(registry, _scrub(registry, args.repo)))


async def _print_reports(registry: Registry) -> None:
    for store in registry.stores.values():
        report = await load_report(store)
        rows = report_rows(report)
        last = f"last pass {report.last_pass_seconds:.1f}s" if report.last_pass_seconds else "no full pass yet"
        print(f"store {store.route or '/'}: {len(rows)} problems, {report.passes} passes, {last}")
        for row in rows:
            print(f"  {row['repository']}  {row['digest']}  {row['problem']}  {row['detail']}  "
                  f"(first seen {row['first_seen']}, last checked {row['last_checked']})")


async def _scrub(registry: Registry, repo: str | None) -> None:
    for store in registry.stores.values():
        if repo and not registry.routes_to(repo, store):
            continue
        if repo and await store.index.read(repo) is None:
            raise SystemExit(f"ocistore scrub: no repository {repo!r}")
        progress = Progress("scrub", total=None, unit=" B")
        async with store.locks.hold("scrub:pass"):
            report = await scrub_store(store, repo=repo, progress=progress.step)
        progress.done()
        print(f"store {store.route or '/'}: {len(report.findings)} problems "
              f"({report.blobs_checked} blobs, {report.bytes_hashed} bytes hashed in all passes)")


def _cmd_dedupe(args: argparse.Namespace) -> None:
    config = _load(args.config)
    registry = Registry.from_config(config)
    asyncio.run(_closing(registry, _reconcile(registry)))


async def _reconcile(registry: Registry) -> None:
    for store in registry.stores.values():
        progress = Progress("reconcile", total=None, unit=" blobs")
        async with store.locks.hold("dedupe-reconcile:store"):
            report = await reconcile(store.blobs, progress.step)
        progress.done()
        print(f"store {store.route or '/'}: dedupe {'on' if report.dedupe else 'off'}: {report.blobs} blobs, "
              f"{report.digests} digests, {report.linked} linked, {report.copied} copied back, "
              f"{report.seconds:.1f}s")


def _cmd_du(args: argparse.Namespace) -> None:
    config = _load(args.config)
    registry = Registry.from_config(config)
    asyncio.run(_closing(registry, _du(registry, args.repo, args.json)))


async def _du(registry: Registry, repo: str | None, as_json: bool) -> None:
    result: dict[str, object] = {}
    for store in registry.stores.values():
        if repo and not registry.routes_to(repo, store):
            continue
        progress = Progress("du", total=None, unit=" blobs")
        usage = await measure(store, repo, progress.step)
        progress.done()
        result[store.route or "/"] = usage.as_dict()
        if not as_json:
            t = usage.total
            print(f"store {store.route or '/'}: logical {_size(t.logical)}, physical {_size(t.physical)}, "
                  f"saved {_size(t.saved)} ({t.blobs} blobs)")
            for name, u in sorted(usage.repositories.items()):
                print(f"  {name}: logical {_size(u.logical)}, physical {_size(u.physical)}, saved {_size(u.saved)}")
    if as_json:
        print(json.dumps(result, indent=2))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def _cmd_topology(args: argparse.Namespace) -> None:
    config = _load(args.config)
    setup_logging(config)
    _access(config)  # each replica reads it again; a bad file stops the launcher, not only them
    from .topology import run

    run(Path(args.config), config, args.replicas, Path(args.state) if args.state else None,
        Path(args.logs) if args.logs else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocistore",
        description="An OCI Distribution registry that stores each repository as a plain OCI image "
                    "layout. Reads zot's JSON (or YAML) configuration unchanged.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the registry in one process",
        description="Run the whole registry in one process. Without CONFIG: repositories under ./data, "
                    "listening on 127.0.0.1:5000.",
    )
    serve.add_argument("config", nargs="?", help="zot-format config file (.json, .yaml or .yml)")
    serve.set_defaults(func=_cmd_serve)
    verify = sub.add_parser(
        "verify", help="check a config file and exit non-zero on a problem",
        description="Check a config file: every key known and every value valid, the directories it names "
                    "writable and the files it names readable. Dials no server unless --connect.")
    verify.add_argument("config", help="zot-format config file (.json, .yaml or .yml)")
    verify.add_argument("--connect", action="store_true",
                        help="also reach Redis, S3 and DynamoDB with the configured credentials")
    verify.set_defaults(func=_cmd_verify)
    schema = sub.add_parser("schema", help="print the config's JSON Schema",
                            description="Print the JSON Schema of the configuration file, keys as zot spells them.")
    schema.set_defaults(func=_cmd_schema)
    gc = sub.add_parser(
        "gc", help="collect garbage now, in the foreground",
        description="Remove what no tag reaches (untagged manifests, unreferenced blobs, stale uploads) once "
                    "older than gcDelay, exactly as the gc-worker does. Safe while the registry serves.",
    )
    gc.add_argument("config", nargs="?", help="zot-format config file (default: ./data, gcDelay 1h)")
    gc.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    gc.add_argument("--repo", help="only this repository")
    gc.set_defaults(func=_cmd_gc)
    scrub = sub.add_parser(
        "scrub", help="check every blob and manifest now, or print the scrub report",
        description="Re-hash every blob and check every manifest's references and sizes, in the foreground, "
                    "recording problems in the same report the scrub-worker keeps.",
    )
    scrub.add_argument("config", nargs="?", help="zot-format config file (default: ./data)")
    scrub.add_argument("--repo", help="only this repository")
    scrub.add_argument("--report", action="store_true", help="print the current report instead of scrubbing")
    scrub.set_defaults(func=_cmd_scrub)
    dd = sub.add_parser(
        "dedupe", help="reconcile existing storage with the dedupe setting now",
        description="With dedupe on, turn every duplicate blob into a link to one original and rebuild the "
                    "cache; with dedupe off, give every holder its own copy again. Runs while the registry "
                    "serves; the workers also run it by themselves after the setting changes.",
    )
    dd.add_argument("config", nargs="?", help="zot-format config file (default: ./data)")
    dd.add_argument("--reconcile", action="store_true", required=True, help="run the reconcile pass")
    dd.set_defaults(func=_cmd_dedupe)
    du = sub.add_parser("du", help="logical and physical bytes per repository and per store",
                        description="Report what the repositories hold (logical bytes), what that takes on "
                                    "disk (physical bytes, each copy counted once) and what dedupe saves.")
    du.add_argument("config", nargs="?", help="zot-format config file (default: ./data)")
    du.add_argument("--repo", help="only this repository")
    du.add_argument("--json", action="store_true", help="print JSON")
    du.set_defaults(func=_cmd_du)
    topo = sub.add_parser(
        "topology", help="run the scaled topology as local processes (no containers)",
        description="Start redis-server (unless the config names a redis URL), N ocistore-api replicas, "
                    "a round-robin load balancer on the config's http address and port, a gc-worker and a "
                    "scrub-worker; stop them all on Ctrl-C.",
    )
    topo.add_argument("config", help="zot-format config file")
    topo.add_argument("--replicas", type=int, default=2, help="API replicas (default 2)")
    topo.add_argument("--state", help="write the replicas' URLs and pids as JSON to this file")
    topo.add_argument("--logs", help="directory for each process's log (default: a new temporary directory)")
    topo.set_defaults(func=_cmd_topology)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
