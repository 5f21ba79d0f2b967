"""The exit status, the same for every command: 0 ok; 1 findings or failure; 2 usage or config.

Real processes against real stores: a store filled through `ocistore serve`, a blob damaged
on disk, an index.json that does not parse, a root directory that cannot exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import OLD, Filled
from tests.cli.helpers import age_everything, blob_path, push_image, run, run_json, write_config
from tests.servers import OcistoreServer

WALKS = [["gc"], ["scrub"], ["scrub", "--report"], ["du"], ["dedupe", "--reconcile"]]
# Every command that reads a config: `ocistore ...`, and the processes of the scaled topology.
READS_CONFIG = [["ocistore", "verify"], *(["ocistore", *w] for w in WALKS), ["ocistore", "serve"],
                ["ocistore", "topology"], ["ocistore-api"], ["ocistore-gc-worker"], ["ocistore-scrub-worker"]]


def _ids(args: list[str]) -> str:
    return " ".join(args)


@pytest.mark.parametrize("command", READS_CONFIG, ids=_ids)
def test_a_config_that_does_not_load_exits_2(tmp_path: Path, command: list[str]) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"storage": {"rootDirectory": ')
    prog, *args = command
    if args[-1:] == ["--reconcile"] or args[-1:] == ["--report"]:
        args = [*args[:-1], str(bad), args[-1]]
    else:
        args = [*args, str(bad)]
    done = run(*args, prog=prog)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{bad}: not valid JSON" in done.stderr and done.stdout == "", done.stderr


def test_verify_exits_2_when_the_config_does_not_load_and_1_when_a_check_fails(tmp_path: Path) -> None:
    unknown = write_config(tmp_path / "unknown.json", {"storage": {"rootDirectory": str(tmp_path), "gcDelya": "1h"}})
    done = run("verify", str(unknown))
    assert done.returncode == 2 and "storage.gcDelya" in done.stderr, done.stderr
    code, doc = run_json("verify", str(unknown))
    assert code == 2 and doc["ok"] is False and "storage.gcDelya" in doc["problems"][0], doc

    (tmp_path / "a-file").write_text("")
    unwritable = write_config(tmp_path / "bad-root.json", {"storage": {"rootDirectory": str(tmp_path / "a-file/data")}})
    done = run("verify", str(unwritable))
    assert done.returncode == 1 and "not a directory" in done.stderr and done.stdout == "", done.stderr
    code, doc = run_json("verify", str(unwritable))
    assert code == 1 and doc["ok"] is False and any("not a directory" in p for p in doc["problems"]), doc

    good = write_config(tmp_path / "good.json", {"storage": {"rootDirectory": str(tmp_path / "data")}})
    done = run("verify", str(good))
    assert done.returncode == 0 and done.stdout.startswith(f"{good}: ok"), done.stderr
    code, doc = run_json("verify", str(good))
    assert code == 0 and doc["ok"] is True and doc["problems"] == [], doc


@pytest.mark.parametrize("command", WALKS, ids=_ids)
def test_storage_that_cannot_be_reached_exits_1(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "a-file").write_text("")
    config = write_config(tmp_path / "config.json", {"storage": {"rootDirectory": str(tmp_path / "a-file/data")}})
    done = run(command[0], str(config), *command[1:])
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"ocistore {command[0]}: storage could not be reached" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("args", [
    [], ["gc", "--bogus"], ["du", "--repo", "Not/A/Name"], ["scrub", "--rate", "fast"], ["scrub", "--rate", "-1"],
    ["dedupe"], ["verify"],
], ids=_ids)
def test_usage_errors_exit_2(args: list[str]) -> None:
    done = run(*args)
    assert done.returncode == 2 and "usage: ocistore" in done.stderr, (done.stdout, done.stderr)


@pytest.mark.parametrize("command", [["gc"], ["gc", "--dry-run"], ["scrub"], ["du"]], ids=_ids)
def test_a_repo_that_is_not_there_exits_2(filled: Filled, command: list[str]) -> None:
    done = run(command[0], filled.config, *command[1:], "--repo", "cli/nowhere")
    assert done.returncode == 2 and "no repository 'cli/nowhere'" in done.stderr, (done.stdout, done.stderr)


def test_every_walk_exits_0_on_a_sound_store(filled: Filled) -> None:
    for command in (["gc", "--dry-run"], *WALKS[1:]):
        done = run(command[0], filled.config, *command[1:])
        assert done.returncode == 0, (command, done.stdout, done.stderr)


def _damaged_store(new_server: Callable[..., OcistoreServer]) -> tuple[OcistoreServer, bytes]:
    server = new_server()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        image = push_image(client, "cli/damaged", "v1", [b"a layer that will rot" * 100])
        push_image(client, "cli/sound", "v1", [b"a layer that stays whole" * 100])
    server.stop()
    return server, image.layers[0]


def test_scrub_exits_1_on_a_damaged_blob_and_its_report_too(new_server: Callable[..., OcistoreServer]) -> None:
    server, layer = _damaged_store(new_server)
    config = str(server.config_path)
    assert run("scrub", config).returncode == 0
    assert run("scrub", config, "--report").returncode == 0
    path = blob_path(server, "cli/damaged", layer)
    path.write_bytes(b"b" + path.read_bytes()[1:])  # one byte flipped behind the registry's back

    done = run("scrub", config)
    assert done.returncode == 1 and "1 problem " in done.stdout and "digest_mismatch" in done.stdout, done.stdout
    code, doc = run_json("scrub", config, "--report")
    assert code == 1 and doc["totals"]["problems"] == 1, doc
    [finding] = doc["stores"]["/"]["findings"]
    assert finding["repository"] == "cli/damaged" and finding["problem"] == "digest_mismatch", finding
    # Confined to the sound repository, the run finds nothing.
    code, doc = run_json("scrub", config, "--repo", "cli/sound")
    assert code == 0 and doc["totals"]["problems"] == 0, doc


def test_gc_exits_1_when_a_repository_cannot_be_collected(new_server: Callable[..., OcistoreServer]) -> None:
    server, _ = _damaged_store(new_server)
    (server.root / "cli/damaged/index.json").write_text("{ not json")
    age_everything(server, OLD)
    config = str(server.config_path)
    done = run("gc", config)
    assert done.returncode == 1 and "cli/damaged: not collected" in done.stdout, (done.stdout, done.stderr)
    code, doc = run_json("gc", config, "--dry-run")
    assert code == 1, doc
    repos = doc["stores"]["/"]["repositories"]
    assert repos["cli/damaged"]["error"] and repos["cli/sound"]["error"] is None, repos
    assert doc["totals"]["errors"] == 1, doc
