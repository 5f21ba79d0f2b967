"""deploy/systemd: the unit checked by the real `systemd-analyze` (verify: no warning at all;
security: its exposure score), its hardening and limits, and the config it starts with
passing the real `ocistore verify`."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from ocistore.config import load_config
from tests.deploy.common import DEPLOY, assert_verifies, ocistore_argv_ok, tool
from tests.servers import BIN

UNIT = DEPLOY / "systemd" / "ocistore.service"
INSTALLED = "/opt/ocistore/bin/ocistore"  # where the unit expects the venv (README "systemd")


def _directives(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> every value given, in order (a key may repeat, as SystemCallFilter= does)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return _directives(UNIT.read_text())


def _one(unit: dict[str, list[str]], key: str) -> str:
    values = unit.get(key)
    assert values and len(values) == 1, f"{key}: {values}"
    return values[0]


def _runnable_copy(tmp_path: Path, extra: str = "") -> Path:
    """The unit with its ExecStart binary pointing at one that exists here (the same command,
    from this test's environment), so that verify has nothing to say about a missing path."""
    assert INSTALLED in UNIT.read_text()
    copy = tmp_path / "ocistore.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(BIN / "ocistore")) + extra)
    return copy


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("systemd-analyze"), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_systemd_analyze_verify_says_nothing(tmp_path: Path) -> None:
    result = _analyze("verify", str(_runnable_copy(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "", f"warnings:\n{result.stdout}{result.stderr}"


def test_systemd_analyze_verify_would_notice_a_mistake(tmp_path: Path) -> None:
    """So that silence above means something: a misspelt directive is reported."""
    result = _analyze("verify", str(_runnable_copy(tmp_path, "\n[Service]\nProtectSytem=strict\n")), cwd=tmp_path)
    assert "ProtectSytem" in result.stdout + result.stderr


def test_exposure_score_is_ok(tmp_path: Path) -> None:
    result = _analyze("security", "--offline=yes", str(_runnable_copy(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for ocistore\.service: ([0-9.]+) (\w+)", result.stdout)
    assert found, result.stdout
    # systemd's scale: 0 is fully locked down, 10 unprotected; below 2 is "OK".
    assert float(found.group(1)) < 2.0, result.stdout


def test_hardening_directives(unit: dict[str, list[str]]) -> None:
    expected = {
        "Service.ProtectSystem": "strict", "Service.ProtectHome": "yes", "Service.PrivateTmp": "yes",
        "Service.NoNewPrivileges": "yes", "Service.PrivateDevices": "yes", "Service.RestrictSUIDSGID": "yes",
        "Service.Restart": "on-failure", "Service.CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert _one(unit, key) == value, key
    families = _one(unit, "Service.RestrictAddressFamilies").split()
    assert set(families) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    filters = unit["Service.SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert all(f.startswith("~") for f in filters[1:]), "later filters only take away"
    user = _one(unit, "Service.User")
    assert user not in ("root", "0") or _one(unit, "Service.DynamicUser") == "yes"


def test_limits_and_stop_timeout(unit: dict[str, list[str]]) -> None:
    # At most 10,000 connections, half the descriptor limit (services/api/ocistore_api/connections.py).
    assert int(_one(unit, "Service.LimitNOFILE")) >= 20_000
    assert re.fullmatch(r"\d+[MG]", _one(unit, "Service.MemoryMax"))
    # uvicorn's 10 s drain, then the workers' 10 s: more than both, less than forever.
    stop = _one(unit, "Service.TimeoutStopSec")
    seconds = int(stop.rstrip("s"))
    assert 20 < seconds <= 120, stop


def test_commands_and_directories_fit_the_config(unit: dict[str, list[str]], tmp_path: Path) -> None:
    state = PurePosixPath("/var/lib") / _one(unit, "Service.StateDirectory")
    config_dir = PurePosixPath("/etc") / _one(unit, "Service.ConfigurationDirectory")
    assert PurePosixPath(_one(unit, "Service.WorkingDirectory")) == state
    for key in ("Service.ExecStartPre", "Service.ExecStart"):
        argv = shlex.split(_one(unit, key))
        assert argv[0] == INSTALLED
        ocistore_argv_ok([Path(argv[0]).name, *argv[1:]])
        assert PurePosixPath(argv[-1]) == config_dir / "config.json"
    assert shlex.split(_one(unit, "Service.ExecStart"))[1] == "serve"
    assert shlex.split(_one(unit, "Service.ExecStartPre"))[1] == "verify"
    config_file = DEPLOY / "systemd" / "config.json"
    assert_verifies(config_file, tmp_path)
    config = load_config(config_file)
    assert PurePosixPath(config.storage.root_directory or "") == state, "the store is the state directory"
    assert config.redis_url is None, "one process needs no Redis"
    # sysusers.d: the user the unit runs as, with the state directory as its home.
    (entry,) = [line.split() for line in (DEPLOY / "systemd" / "ocistore.sysusers").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert entry[0] == "u" and entry[1] == _one(unit, "Service.User") == _one(unit, "Service.Group")
    assert str(state) in entry
