"""What every ocistore command line shares: `--version`, the exit status, loading the config,
and the scrub rate limit (`--rate`), so `ocistore` and the service processes agree on each."""

from __future__ import annotations

import argparse
import sys

from .config import Config, ConfigError, load_config
from .units import parse_rate
from .version import version_text

EXIT_OK = 0
# verify found problems, scrub found damage, gc could not collect a repository or met a manifest
# that does not parse, storage could not be reached.
EXIT_FINDINGS = 1
# Bad arguments (argparse's own status), a config that does not load, a repository named that is not there.
EXIT_USAGE = 2

EXIT_STATUS = """\
exit status (the same for every command):
  0  ok
  1  findings or failure: verify found problems, scrub found damage, gc could not
     collect a repository or met a manifest that does not parse, storage (or the
     locks' Redis) could not be reached
  2  usage or configuration error: bad arguments, a config file that does not load,
     a --repo that names no repository"""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own, except that the exit status table keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return text if text == EXIT_STATUS else super()._fill_text(text, width, indent)


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser: its `--version`, and the exit status table closing its `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_STATUS,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=version_text(prog),
                        help="print the version (with Python's and the Distribution Spec's) and exit")
    return parser


def load_config_or_exit(path: str, prog: str) -> Config:
    """The config at `path`; one line on stderr and exit status 2 when it does not load."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def scrub_rate(text: str) -> float | None:
    """argparse type of `--rate MiB/s`: bytes a second for scrub's pacer, None for no limit (0)."""
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_rate_argument(parser: argparse.ArgumentParser, default: str, why: str = "") -> None:
    """`--rate MiB/s`, as the scrub-worker and `ocistore scrub` both take it."""
    limit = "default: no limit" if scrub_rate(default) is None else f"default {default}; 0: no limit"
    parser.add_argument("--rate", type=scrub_rate, default=scrub_rate(default), metavar="MiB/s",
                        help=f"hash at most this many MiB a second{why} ({limit})")
