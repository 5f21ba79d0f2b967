"""One unit system (IEC, through `ocistore.units.format_bytes`) in every command's text, a
progress bar with total, percent and ETA on a terminal only, and scrub's `--rate`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import httpx
import pytest

from ocistore.units import KiB, MiB, format_bytes, parse_rate
from tests.cli.conftest import Filled
from tests.cli.helpers import on_terminal, push_image, run, run_json
from tests.servers import OcistoreServer

SIZE = re.compile(r"\b\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB|PiB|EiB)\b")
DECIMAL_OR_BARE = re.compile(r"\b\d+(?:\.\d+)? ?(?:kB|KB|MB|GB|TB|bytes)\b")
# tqdm's bar: "label:  40%|####      | 2/5 [00:01<00:02, ...]"
BAR = re.compile(r"(?P<label>[a-z]+ /): +(?P<percent>\d+)%\|[^|]*\| (?P<done>[^/]+)/(?P<total>[^ ]+(?: [KMG]iB| B)?) "
                 r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)")


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (MiB - 1, "1.0 MiB"), (10 * MiB, "10.0 MiB"),
    (3 << 30, "3.0 GiB"), (5 << 40, "5.0 TiB"), (1 << 70, "1024.0 EiB"),
])
def test_sizes_are_iec(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_rates_are_mib_a_second_and_0_means_no_limit() -> None:
    assert parse_rate("200") == 200 * MiB and parse_rate("0.5") == 512 * KiB and parse_rate("0") is None
    for bad in ("-1", "fast", "inf", "nan"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_every_command_prints_sizes_in_the_one_unit_system(filled: Filled) -> None:
    outputs = {args[0] + (" --dry-run" if "--dry-run" in args else ""): run(args[0], filled.config, *args[1:])
               for args in (["gc", "--dry-run"], ["du"], ["scrub"])}
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stderr)
        assert SIZE.search(done.stdout), f"{name} prints no size:\n{done.stdout}"
        assert not DECIMAL_OR_BARE.search(done.stdout), f"{name} prints another unit:\n{done.stdout}"
    # The text shows what the JSON counts exactly.
    _, du = run_json("du", filled.config)
    usage = du["stores"]["/"]
    assert (f"store /: logical {format_bytes(usage['logical_bytes'])}, "
            f"physical {format_bytes(usage['physical_bytes'])}, "
            f"saved {format_bytes(usage['saved_bytes'])}") in outputs["du"].stdout, outputs["du"].stdout
    _, gc = run_json("gc", filled.config, "--dry-run")
    assert f"would free {format_bytes(gc['totals']['bytes_freed'])} logical" in outputs["gc --dry-run"].stdout
    _, scrub = run_json("scrub", filled.config)
    assert f"{format_bytes(scrub['stores']['/']['run']['bytes_hashed'])} hashed" in outputs["scrub"].stdout


def test_a_progress_bar_on_a_terminal_and_never_with_json(filled: Filled) -> None:
    _, du = run_json("du", filled.config)
    blobs = du["stores"]["/"]["blobs"]
    for args, label, total in ((["du"], "du /", str(blobs)), (["gc", "--dry-run"], "gc /", "2"),
                               (["scrub"], "scrub /", None), (["dedupe", "--reconcile"], "reconcile /", str(blobs))):
        done, terminal = on_terminal(args[0], filled.config, *args[1:])
        assert done.returncode == 0, terminal
        bars = [m for m in BAR.finditer(terminal) if m["label"] == label]
        assert bars, f"no bar for {args} on the terminal:\n{terminal!r}"
        if total is not None:
            assert {m["total"] for m in bars} == {total}, terminal
        else:  # scrub counts bytes, in the units of everything else
            assert all(SIZE.fullmatch(m["total"]) for m in bars), terminal
        assert not DECIMAL_OR_BARE.search(terminal), terminal
        assert SIZE.search(done.stdout) or "dedupe on" in done.stdout, done.stdout  # the result still on stdout

    for args in (["du"], ["gc", "--dry-run"], ["scrub"], ["scrub", "--report"], ["verify"]):
        done, terminal = on_terminal(args[0], filled.config, *args[1:], "--json")
        assert done.returncode == 0 and terminal == "", (args, terminal)
        assert done.stdout.startswith("{") and done.stdout.rstrip().endswith("}"), done.stdout


def test_scrub_rate_caps_the_bytes_hashed_a_second(new_server: Callable[..., OcistoreServer]) -> None:
    server = new_server()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push_image(client, "cli/paced", "v1", [os.urandom(160 << 10), os.urandom(160 << 10)])
    server.stop()
    rate = 0.25  # MiB/s: the 320 KiB take at least 1.25 s
    code, doc = run_json("scrub", str(server.config_path), "--rate", str(rate))
    assert code == 0, doc
    run_ = doc["stores"]["/"]["run"]
    least = run_["bytes_hashed"] / (rate * MiB)
    assert run_["bytes_hashed"] > 320 << 10 and run_["seconds"] >= 0.95 * least, run_
