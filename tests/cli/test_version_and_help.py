"""`--version` on every command, and the exit status table closing every `--help`."""

from __future__ import annotations

import platform
from importlib import metadata

import pytest

from ocistore.commandline import EXIT_STATUS
from tests.cli.helpers import run

PROGRAMS = ["ocistore", "ocistore-api", "ocistore-gc-worker", "ocistore-scrub-worker"]
SUBCOMMANDS = ["serve", "verify", "schema", "gc", "scrub", "dedupe", "du", "topology"]


@pytest.mark.parametrize("prog", PROGRAMS)
def test_version_names_the_package_python_and_the_distribution_spec(prog: str) -> None:
    done = run("--version", prog=prog)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == (f"{prog} {metadata.version('ocistore')} (Python {platform.python_version()}, "
                           "OCI Distribution Spec 1.1.0)\n")


@pytest.mark.parametrize("args", [[prog, "--help"] for prog in PROGRAMS] + [["ocistore", c, "--help"]
                                                                            for c in SUBCOMMANDS],
                         ids=lambda a: " ".join(a))
def test_every_help_ends_with_the_one_exit_status_table(args: list[str]) -> None:
    prog, *rest = args
    done = run(*rest, prog=prog)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(EXIT_STATUS), done.stdout
    for code in ("0  ok", "1  findings or failure", "2  usage or configuration error"):
        assert code in done.stdout
