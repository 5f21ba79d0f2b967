"""zot's retention policies, end to end: real `ocistore serve` processes record pushes and
pulls, the real `ocistore gc` applies the policy, on local disk and on S3 (moto).

What matters most is what is kept: a tag a policy keeps, a tag pulled recently (on any
replica, recorded before a restart), a tag with no statistics; and that a dry run removes
nothing. Waits are for age (a retention delay of 1s), never for another process: what a
server recorded is read after it stopped (it flushes on the way out), or polled for.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import Image, digest_of, push_random_image
from tests.moto import MotoServer
from tests.servers import BIN, OcistoreServer, RedisServer, wait_until

DELAY = 1.0


@pytest.fixture(params=["local", "s3"])
def driver_keys(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The storage keys of each driver: local disk, or a bucket of the test's own on moto."""
    if request.param == "local":
        yield {}
        return
    moto: MotoServer = request.getfixturevalue("moto_s3")
    bucket = moto.new_bucket()
    try:
        yield {"storageDriver": moto.driver_params(bucket)}
    finally:
        moto.remove_bucket(bucket)


def new_repo() -> str:
    return f"ret/{uuid.uuid4().hex[:10]}"


def storage(driver: dict[str, Any], *policies: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    return {**driver, "gc": True, "gcDelay": f"{DELAY:g}s",
            "retention": {"dryRun": dry_run, "policies": list(policies)}}


def gc(config: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "ocistore"), "gc", str(config), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ocistore gc exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tags(server: OcistoreServer, repo: str) -> set[str]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        resp = c.get(f"/v2/{repo}/tags/list")
        assert resp.status_code == 200, resp.text
        return set(resp.json()["tags"] or [])


def manifest_status(server: OcistoreServer, repo: str, ref: str) -> int:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.get(f"/v2/{repo}/manifests/{ref}").status_code


def push(server: OcistoreServer, repo: str, *names: str) -> dict[str, Image]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        return {name: push_random_image(c, repo, name) for name in names}


def past_delay() -> None:
    """What was pushed so far becomes older than the retention delay (an age, not a sync)."""
    time.sleep(DELAY + 0.5)


def test_a_policy_removes_the_tags_it_does_not_keep_and_gc_then_their_images(
    tmp_path: Path, driver_keys: dict[str, Any]
) -> None:
    server = OcistoreServer(tmp_path, storage(driver_keys, {
        "repositories": ["ret/**"],
        "keepTags": [{"patterns": ["^release-"]}, {"patterns": [".*"], "mostRecentlyPushedCount": 2}]})).start()
    repo = new_repo()
    try:
        images = push(server, repo, "release-1", "a", "b", "c")
        with httpx.Client(base_url=server.url, timeout=30) as c:
            other = push_random_image(c, "elsewhere/app", "a")  # no policy matches: every tag stays
        past_delay()
        server.stop()  # what it recorded reaches the store on the way out
        dry = gc(server.config_path, "--dry-run")
        assert f"{repo}: would remove tag a ({images['a'].digest}): didn't meet any tag retention rule" in dry, dry
        out = gc(server.config_path)
        server.start()
        assert f"{repo}: removed tag a" in out and f"{repo}: removed manifest {images['a'].digest}" in out, out
        assert tags(server, repo) == {"release-1", "b", "c"}
        assert manifest_status(server, repo, images["a"].digest) == 404
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get(f"/v2/{repo}/blobs/{digest_of(images['a'].layers[0])}").status_code == 404
            assert c.get(f"/v2/{repo}/blobs/{digest_of(images['b'].layers[0])}").status_code == 200
        assert tags(server, "elsewhere/app") == {"a"} and manifest_status(server, "elsewhere/app", other.digest) == 200
    finally:
        server.stop()


def test_pulls_keep_tags_across_a_restart_and_a_head_is_no_pull(tmp_path: Path, driver_keys: dict[str, Any]) -> None:
    server = OcistoreServer(tmp_path, storage(driver_keys, {
        "repositories": ["**"], "keepTags": [{"mostRecentlyPulledCount": 1}]})).start()
    repo = new_repo()
    try:
        images = push(server, repo, "pulled", "headed", "fresh")
        past_delay()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get(f"/v2/{repo}/manifests/pulled", headers={"Accept": images["pulled"].media_type}
                         ).status_code == 200
            for _ in range(3):
                assert c.head(f"/v2/{repo}/manifests/headed").status_code == 200
        server.stop()  # what it recorded reaches the store on the way out
        server.start()
        server.stop()  # a restart that records nothing must not lose what was recorded
        out = gc(server.config_path)
        assert "removed tag headed" in out and "removed tag fresh" in out and "tag pulled" not in out, out
        server.start()
        assert tags(server, repo) == {"pulled"}
    finally:
        server.stop()


def test_a_tag_pushed_within_the_retention_delay_stays(tmp_path: Path, driver_keys: dict[str, Any]) -> None:
    server = OcistoreServer(tmp_path, {**storage(driver_keys, {
        "repositories": ["**"], "keepTags": [{"patterns": ["^v"]}]}), "retention": {
        "delay": "1h", "policies": [{"repositories": ["**"], "keepTags": [{"patterns": ["^v"]}]}]}}).start()
    repo = new_repo()
    try:
        push(server, repo, "v1", "scratch")
        server.stop()
        assert "removed tag" not in gc(server.config_path)
        server.start()
        assert tags(server, repo) == {"v1", "scratch"}
    finally:
        server.stop()


def test_retention_dry_run_reports_and_removes_no_tag_and_no_manifest(
    tmp_path: Path, driver_keys: dict[str, Any]
) -> None:
    server = OcistoreServer(tmp_path, storage(driver_keys, {
        "repositories": ["**"], "keepTags": [{"patterns": ["^keep$"]}]}, dry_run=True)).start()
    repo = new_repo()
    try:
        images = push(server, repo, "keep", "drop")
        with httpx.Client(base_url=server.url, timeout=30) as c:
            untagged = push_random_image(c, repo)
        past_delay()
        server.stop()
        out = gc(server.config_path)
        assert "removed tag drop" in out and "(retention.dryRun: kept)" in out, out
        server.start()
        assert tags(server, repo) == {"keep", "drop"}
        assert manifest_status(server, repo, untagged.digest) == 200
        assert manifest_status(server, repo, images["drop"].digest) == 200
    finally:
        server.stop()


def test_replicas_share_pulls_through_redis_and_gc_keeps_the_record_in_the_store(
    tmp_path: Path, session_redis: RedisServer
) -> None:
    """Two replicas of one store: a pull on the second keeps a tag the first pushed; GC then
    copies the shared record into the store, where it outlives Redis."""
    keys = {**storage({"rootDirectory": str(tmp_path / "data")}, {
        "repositories": ["**"], "keepTags": [{"mostRecentlyPulledCount": 1}]})}
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
    first = OcistoreServer(tmp_path / "a", keys, {"redis": session_redis.url}).start()
    second = OcistoreServer(tmp_path / "b", keys, {"redis": session_redis.url}).start()
    repo = new_repo()
    try:
        images = push(first, repo, "used", "idle")
        past_delay()
        with httpx.Client(base_url=second.url, timeout=30) as c:
            assert c.get(f"/v2/{repo}/manifests/used", headers={"Accept": images["used"].media_type}
                         ).status_code == 200
        shared = redis.Redis.from_url(session_redis.url)
        key = f"ocistore:stats:{repo}"

        def pulled() -> bool:
            value = shared.hget(key, images["used"].digest)
            return value is not None and float(value.split()[1]) > 0

        assert wait_until(pulled, timeout=20), "the second replica's pull never reached Redis"
        out = gc(first.config_path)
        assert "removed tag idle" in out and "tag used" not in out, out
        assert tags(first, repo) == tags(second, repo) == {"used"}
        record = json.loads((tmp_path / "data" / ".ocistore" / "stats" / repo / "_stats.json").read_text())
        assert images["used"].digest in record["refs"] and "idle" not in record["refs"]
        assert shared.hget(key, "idle") is None, "GC left the removed tag's statistics in Redis"
    finally:
        second.stop()
        first.stop()
