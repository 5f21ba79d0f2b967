"""What the deployment tests share: where things are, and the real tools they run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.servers import BIN

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def tool(name: str, *fallbacks: str) -> str:
    """The path of a tool the tests need. Missing, the test fails (never skips): the tool is
    part of what `make test` installs (Makefile, TEST_APT) or of the dev dependencies."""
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate)
        if found:
            return found
    raise AssertionError(f"{name} is not installed: the deployment tests need it (see the Makefile's TEST_APT)")


def ocistore_verify(config: Path | dict[str, Any], workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`ocistore verify` of a config file (or of a config given as a dict, written to `workdir`)."""
    if isinstance(config, dict):
        path = workdir / "config.json"
        path.write_text(json.dumps(config))
    else:
        path = config
    return subprocess.run([str(BIN / "ocistore"), "verify", *extra, str(path)], capture_output=True, text=True,
                          cwd=workdir, timeout=60)


def assert_verifies(config: Path | dict[str, Any], workdir: Path) -> str:
    result = ocistore_verify(config, workdir)
    assert result.returncode == 0, f"ocistore verify failed:\n{result.stdout}{result.stderr}"
    assert ": ok" in result.stdout, result.stdout
    return result.stdout


def ocistore_argv_ok(argv: list[str]) -> None:
    """A command line a container or unit runs parses with the real entry point's parser."""
    assert argv, "empty command"
    name = Path(argv[0]).name
    assert name in SCRIPTS, f"{argv[0]} is none of the project's commands {sorted(SCRIPTS)}"
    if name == "ocistore":
        from ocistore_cli.main import build_parser

        build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown subcommand or flag
        return
    # The services build their parsers inside main(); `--help` through the real entry point
    # proves the command exists, and lists the flags it takes.
    result = subprocess.run([str(BIN / name), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    flags = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    for arg in argv[1:]:
        if arg.startswith("--"):
            # Exactly as the help spells it: argparse would also take an abbreviation.
            assert arg.split("=", 1)[0] in flags, f"{name} takes no {arg}:\n{result.stdout}"


def read_lock(path: Path) -> dict[str, tuple[Version, Marker | None, list[str]]]:
    """name -> (pinned version, environment marker, hashes) of a `pip --require-hashes` file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out: dict[str, tuple[Version, Marker | None, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        req = Requirement(re.sub(r"\s--hash=\S+", "", line).strip())
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{path.name}: {req} is not pinned with =="
        assert hashes, f"{path.name}: {req.name} has no hash"
        out[canonicalize_name(req.name)] = (Version(pins[0].version), req.marker, hashes)
    return out
