"""The `ocistore` command."""

from __future__ import annotations

import argparse
import logging
import sys

from ocistore.config import Config, ConfigError, load_config, warn_pending
from ocistore.durations import format_duration

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


def _setup_logging(config: Config) -> None:
    handler: logging.Handler = (
        logging.FileHandler(config.log.output) if config.log.output else logging.StreamHandler(sys.stderr)
    )
    logging.basicConfig(level=_LEVELS[config.log.level], handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load(path: str | None) -> Config:
    try:
        return load_config(path) if path else Config()
    except ConfigError as exc:
        print(f"ocistore: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_serve(args: argparse.Namespace) -> None:
    config = _load(args.config)
    _setup_logging(config)
    warn_pending(config)
    from .standalone import serve

    serve(config)


def _cmd_verify(args: argparse.Namespace) -> None:
    config = _load(args.config)
    s = config.storage
    print(f"{args.config}: ok")
    print(f"  rootDirectory {s.root_directory}, dedupe {s.dedupe}, gc {s.gc}, "
          f"gcDelay {format_duration(s.gc_delay)}, gcInterval {format_duration(s.gc_interval)}, commit {s.commit}")
    print(f"  listens on {config.http.address}:{config.http.port}")
    for key in config.pending:
        print(f"  note: {key} is accepted but not implemented yet")


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
    verify = sub.add_parser("verify", help="check a config file and exit non-zero on a problem",
                            description="Check a config file: every key known and every value valid.")
    verify.add_argument("config", help="zot-format config file (.json, .yaml or .yml)")
    verify.set_defaults(func=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
