"""The `ocistore` command: its parser, and the dispatch of each command to the module doing it.

Every command ends with the exit status of `ocistore.commandline` (0 ok, 1 findings or
failure, 2 usage or config error), the table its `--help` closes with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ocistore.auth import Access
from ocistore.commandline import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_STATUS,
    EXIT_USAGE,
    HelpFormatter,
    add_rate_argument,
    command_parser,
    load_config_or_exit,
)
from ocistore.config import Config, ConfigError, json_schema, load_config
from ocistore.errors import RegistryError
from ocistore.logs import handle_signals, setup_logging
from ocistore.names import name_fault
from ocistore.registry import Registry

from . import maintenance
from .output import Output, note
from .verify import problems_connecting, problems_on_disk, summary, summary_lines

PROG = "ocistore"


def _load(path: str | None) -> Config:
    return load_config_or_exit(path, PROG) if path else Config()


def _access(config: Config) -> Access:
    """The config's access rules, loaded (its htpasswd file read) before anything is served."""
    try:
        return Access(config.http)
    except ConfigError as exc:
        note(f"{PROG}: {exc}")
        raise SystemExit(EXIT_USAGE) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    setup_logging(config)
    handle_signals(args.config)
    access = _access(config)
    from .standalone import serve

    serve(config, access)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    out = Output(args.json)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        out.document({"config": args.config, "ok": False, "problems": [str(exc)]})
        note(f"{PROG}: {exc}")
        return EXIT_USAGE
    found = problems_on_disk(config) + (problems_connecting(config) if args.connect else [])
    facts = summary(config)
    out.document({"config": args.config, "ok": not found, "problems": found, **facts})
    if found:
        if not args.json:
            for problem in found:
                note(f"{PROG}: {problem}")
        return EXIT_FINDINGS
    out.line(f"{args.config}: ok")
    for line in summary_lines(facts):
        out.line(f"  {line}")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


Work = Callable[[Registry, Output], Coroutine[Any, Any, int]]


def _walk(args: argparse.Namespace, work: Work) -> int:
    """Run a command that walks storage; storage it cannot reach is a failure (status 1)."""
    config = _load(args.config)
    out = Output(getattr(args, "json", False))
    try:
        registry = Registry.from_config(config)
        return asyncio.run(_closing(registry, work(registry, out)))
    except maintenance.UsageError as exc:
        note(f"{PROG} {args.command}: {exc}")
        return EXIT_USAGE
    except (OSError, RegistryError) as exc:
        note(f"{PROG} {args.command}: storage could not be reached: {exc}")
        return EXIT_FINDINGS


async def _closing(registry: Registry, work: Coroutine[Any, Any, int]) -> int:
    """Run a command's work, then close the registry's connections inside the same loop."""
    try:
        return await work
    finally:
        await registry.close()


def _cmd_gc(args: argparse.Namespace) -> int:
    return _walk(args, lambda registry, out: maintenance.gc(registry, args.repo, args.dry_run, out))


def _cmd_scrub(args: argparse.Namespace) -> int:
    if args.report:
        return _walk(args, maintenance.scrub_report)
    return _walk(args, lambda registry, out: maintenance.scrub(registry, args.repo, args.rate, out))


def _cmd_dedupe(args: argparse.Namespace) -> int:
    return _walk(args, maintenance.reconcile_all)


def _cmd_du(args: argparse.Namespace) -> int:
    return _walk(args, lambda registry, out: maintenance.du(registry, args.repo, out))


def _cmd_topology(args: argparse.Namespace) -> int:
    config = _load(args.config)
    setup_logging(config)
    _access(config)  # each replica reads it again; a bad file stops the launcher, not only them
    from .topology import run

    run(Path(args.config), config, args.replicas, Path(args.state) if args.state else None,
        Path(args.logs) if args.logs else None)
    return EXIT_OK


def _repository(text: str) -> str:
    fault = name_fault(text)
    if fault is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is no repository name: {fault}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        PROG, "An OCI Distribution registry that stores each repository as a plain OCI image layout. "
              "Reads zot's JSON (or YAML) configuration unchanged.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, epilog=EXIT_STATUS,
                              formatter_class=HelpFormatter)

    def config_arg(p: argparse.ArgumentParser, default: str = "./data") -> None:
        p.add_argument("config", nargs="?", help=f"zot-format config file (default: {default})")

    def json_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true",
                       help="print one JSON document (sizes in bytes) instead of text, and no progress bar")

    serve = command("serve", "run the registry in one process",
                    "Run the whole registry in one process. Without CONFIG: repositories under ./data, "
                    "listening on 127.0.0.1:5000.")
    serve.add_argument("config", nargs="?", help="zot-format config file (.json, .yaml or .yml)")
    serve.set_defaults(func=_cmd_serve)

    verify = command("verify", "check a config file and exit non-zero on a problem",
                     "Check a config file: every key known and every value valid, the directories it names "
                     "writable and the files it names readable. Dials no server unless --connect. Exits 2 "
                     "when the file does not load, 1 when it loads but a check fails.")
    verify.add_argument("config", help="zot-format config file (.json, .yaml or .yml)")
    verify.add_argument("--connect", action="store_true",
                        help="also reach Redis, S3 and DynamoDB with the configured credentials")
    json_arg(verify)
    verify.set_defaults(func=_cmd_verify)

    schema = command("schema", "print the config's JSON Schema",
                     "Print the JSON Schema of the configuration file, keys as zot spells them.")
    schema.set_defaults(func=_cmd_schema)

    gc = command("gc", "collect garbage now, in the foreground",
                 "Remove what no tag reaches (untagged manifests, unreferenced blobs, stale uploads) once "
                 "older than gcDelay, exactly as the gc-worker does. Safe while the registry serves. Prints "
                 "what goes, the bytes freed (logical, and on storage: a blob another repository still holds "
                 "frees nothing) and the unreferenced bytes gcDelay still holds back.")
    config_arg(gc, "./data, gcDelay 1h")
    gc.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    gc.add_argument("--repo", type=_repository, help="only this repository")
    json_arg(gc)
    gc.set_defaults(func=_cmd_gc)

    scrub = command("scrub", "check every blob and manifest now, or print the scrub report",
                    "Re-hash every blob and check every manifest's references and sizes, in the foreground, "
                    "recording problems in the same report the scrub-worker keeps. Exits 1 when a problem "
                    "is found (with --report: when the report holds one).")
    config_arg(scrub)
    scrub.add_argument("--repo", type=_repository, help="only this repository")
    scrub.add_argument("--report", action="store_true", help="print the current report instead of scrubbing")
    add_rate_argument(scrub, "0")
    json_arg(scrub)
    scrub.set_defaults(func=_cmd_scrub)

    dd = command("dedupe", "reconcile existing storage with the dedupe setting now",
                 "With dedupe on, turn every duplicate blob into a link to one original and rebuild the "
                 "cache; with dedupe off, give every holder its own copy again. Runs while the registry "
                 "serves; the workers also run it by themselves after the setting changes.")
    config_arg(dd)
    dd.add_argument("--reconcile", action="store_true", required=True, help="run the reconcile pass")
    dd.set_defaults(func=_cmd_dedupe)

    du = command("du", "logical and physical bytes per repository and per store",
                 "Report what the repositories hold (logical bytes), what that takes on disk (physical "
                 "bytes, each copy counted once) and what dedupe saves.")
    config_arg(du)
    du.add_argument("--repo", type=_repository, help="only this repository")
    json_arg(du)
    du.set_defaults(func=_cmd_du)

    topo = command("topology", "run the scaled topology as local processes (no containers)",
                   "Start redis-server (unless the config names a redis URL), N ocistore-api replicas, "
                   "a round-robin load balancer on the config's http address and port, a gc-worker and a "
                   "scrub-worker; stop them all on Ctrl-C.")
    topo.add_argument("config", help="zot-format config file")
    topo.add_argument("--replicas", type=int, default=2, help="API replicas (default 2)")
    topo.add_argument("--state", help="write the replicas' URLs and pids as JSON to this file")
    topo.add_argument("--logs", help="directory for each process's log (default: a new temporary directory)")
    topo.set_defaults(func=_cmd_topology)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    sys.stdout.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
