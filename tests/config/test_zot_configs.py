"""zot-style configs, one per key family: each passes `verify` and starts `serve`, which then
does what the keys say."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import push_random_image
from tests.moto import REGION, MotoServer
from tests.servers import BIN, OcistoreServer, RedisServer


def verify(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ocistore"), "verify", str(path), *flags], capture_output=True, text=True,
                          timeout=60)


def serves(tmp_path: Path, storage: dict[str, Any], extra: dict[str, Any] | None = None) -> OcistoreServer:
    server = OcistoreServer(tmp_path, storage=storage, extra=extra)
    checked = verify(server.config_path)
    assert checked.returncode == 0, checked.stderr
    return server.start()


def pushes(server: OcistoreServer, repo: str = "zot/family") -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        image = push_random_image(client, repo, "v1")
        got = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": image.media_type})
        assert got.status_code == 200 and got.content == image.manifest


FAMILIES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "gc": ({"gc": True, "gcDelay": "2h", "gcInterval": "30m", "gcTimeWindow": "01:00-05:00"}, {}),
    "subpaths": ({"dedupe": True, "gc": True, "subPaths": {
        "/a": {"rootDirectory": "SUB/a", "dedupe": True}, "/b": {"rootDirectory": "SUB/b", "gc": True}}}, {}),
    "http": ({}, {"http": {"readTimeout": "30s", "writeTimeout": "30s", "compat": ["docker2s2"]},
                  "log": {"level": "debug"}}),
    "extensions": ({}, {"extensions": {"scrub": {"enable": True, "interval": "24h"},
                                       "metrics": {"enable": True, "prometheus": {"path": "/ops/metrics"}},
                                       "search": {"enable": False}, "ui": {"enable": False},
                                       "sync": {"enable": False, "registries": []}}}),
    # zot's examples/config-retention.json, policies in the order zot picks them.
    "retention": ({"gc": True, "gcDelay": "2h", "retention": {"dryRun": False, "delay": "24h", "policies": [
        {"repositories": ["infra/*", "prod/*"], "deleteReferrers": False, "keepTags": [
            {"patterns": ["v2.*", ".*-prod"]}, {"patterns": ["v3.*", ".*-prod"], "pulledWithin": "168h"}]},
        {"repositories": ["tmp/**"], "deleteReferrers": True, "deleteUntagged": True, "keepTags": [
            {"patterns": ["v1.*"], "pulledWithin": "168h", "pushedWithin": "168h"}]},
        {"repositories": ["**"], "deleteReferrers": True, "deleteUntagged": True,
         "keepUntagged": {"pulledWithin": "720h"}, "keepTags": [
            {"mostRecentlyPushedCount": 10, "mostRecentlyPulledCount": 10,
             "pulledWithin": "720h", "pushedWithin": "720h"}]}]}}, {}),
    "top-level": ({"fastRestart": True}, {"distSpecVersion": "1.1.1", "scheduler": {"numWorkers": 3},
                                          "goVersion": "go1.22.5", "binaryType": "minimal"}),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_zot_config_of_each_key_family_verifies_and_serves(tmp_path: Path, family: str) -> None:
    storage, extra = json.loads(json.dumps(FAMILIES[family]).replace("SUB/", f"{tmp_path}/"))
    server = serves(tmp_path, storage, extra)
    try:
        pushes(server)
        if family == "subpaths":
            pushes(server, "a/x")
            assert (tmp_path / "a" / "a" / "x" / "index.json").is_file()
        if family == "extensions":
            assert "ocistore_dependency_up" in httpx.get(f"{server.url}/ops/metrics", timeout=10).text
            assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 404
    finally:
        server.stop()


def test_metrics_disabled_are_not_served(tmp_path: Path) -> None:
    server = serves(tmp_path, {}, {"extensions": {"metrics": {"enable": False}}})
    try:
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 404
    finally:
        server.stop()


def test_a_redis_cache_with_go_redis_url_options_serves_uploads(tmp_path: Path, session_redis: RedisServer) -> None:
    """Once every upload answered 500 here: the options went to redis-py untranslated."""
    url = f"{session_redis.url}?dial_timeout=3&read_timeout=6s&pool_size=10&pool_fifo=true"
    server = serves(tmp_path, {"dedupe": True, "remoteCache": True,
                               "cacheDriver": {"name": "redis", "url": url, "keyprefix": "zotstyle"}})
    try:
        pushes(server)
        pushes(server, "zot/other")
    finally:
        server.stop()
    assert verify(server.config_path, "--connect").returncode == 0


def test_zots_s3_config_with_the_remote_cache_default_serves(tmp_path: Path, moto_s3: MotoServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """zot's s3 examples leave remoteCache out: with a storageDriver it defaults to true."""
    # DynamoDB's credentials come from the standard chain, as zot's do.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
    storage = {"dedupe": True, "storageDriver": moto_s3.driver_params(moto_s3.new_bucket()),
               "cacheDriver": {"name": "dynamodb", "endpoint": moto_s3.url, "region": REGION,
                               "cacheTablename": "zotblobs", "repoMetaTablename": "zotrepo",
                               "imageMetaTablename": "zotimage", "repoBlobsInfoTablename": "zotblobsinfo",
                               "userDataTablename": "zotuser", "versionTablename": "zotversion",
                               "apiKeyTablename": "zotapikey"}}
    server = serves(tmp_path, storage)
    try:
        pushes(server)
    finally:
        server.stop()
    assert verify(server.config_path, "--connect").returncode == 0


def test_verify_connect_names_what_it_cannot_reach(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path / "data")},
                                "redis": "redis://127.0.0.1:1/0"}))
    assert verify(path).returncode == 0  # dials nothing without --connect
    result = verify(path, "--connect")
    assert result.returncode != 0 and "redis: cannot reach redis://127.0.0.1:1/0" in result.stderr


def test_verify_names_a_directory_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path / "file" / "data")}}))
    result = verify(path)
    assert result.returncode != 0 and "storage.rootDirectory" in result.stderr and "not a directory" in result.stderr


def test_schema_is_the_config_s_json_schema() -> None:
    out = subprocess.run([str(BIN / "ocistore"), "schema"], capture_output=True, text=True, timeout=60, check=True)
    schema = json.loads(out.stdout)
    storage = schema["$defs"]["GlobalStorageConfig"]["properties"]
    assert {"rootDirectory", "gcDelay", "remoteCache", "subPaths", "retention"} <= set(storage)
    assert schema["$defs"]["GlobalStorageConfig"]["additionalProperties"] is False
