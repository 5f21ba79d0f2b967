"""zot's config read unchanged, strictly: a typo is an error naming the key and value."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ocistore.config import ConfigError, load_config, parse_config
from ocistore.durations import parse_duration
from tests.servers import BIN

# The configs; beside them lie the files they name (htpasswd, LDAP credentials, a certificate).
EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("config*.*"))


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ocistore"), "verify", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_verifies(example: Path) -> None:
    result = verify(example)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_defaults_are_zots() -> None:
    cfg = parse_config({"storage": {"rootDirectory": "/r"}})
    assert (cfg.storage.dedupe, cfg.storage.gc, cfg.storage.commit) == (True, True, False)
    assert cfg.storage.gc_delay == 3600
    assert (cfg.http.address, cfg.http.port) == ("127.0.0.1", 5000)


def test_connection_limits_have_safe_defaults_and_zots_timeouts_map_to_them() -> None:
    http = parse_config({"storage": {"rootDirectory": "/r"}}).http
    assert (http.max_header_bytes, http.max_header_fields) == (65536, 100)
    assert (http.header_timeout, http.body_idle_timeout, http.write_timeout) == (10, 60, 60)
    assert (http.keep_alive_timeout, http.max_requests_per_connection, http.max_connections) == (30, 1000, None)
    http = parse_config({"storage": {"rootDirectory": "/r"}, "http": {
        "readTimeout": "20s", "bodyIdleTimeout": "2m", "WriteTimeout": "5s", "maxHeaderBytes": "8192",
        "maxHeaderFields": 50, "keepAliveTimeout": "1s", "maxRequestsPerConnection": 10, "maxConnections": 100,
    }}).http
    # readTimeout bounds the head and the body gaps, unless those are set on their own.
    assert (http.header_timeout, http.body_idle_timeout, http.write_timeout) == (20, 120, 5)
    assert (http.max_header_bytes, http.max_header_fields, http.keep_alive_timeout) == (8192, 50, 1)
    assert (http.max_requests_per_connection, http.max_connections) == (10, 100)


def test_keys_match_case_insensitively_and_ports_may_be_strings() -> None:
    cfg = parse_config({"STORAGE": {"rootdirectory": "/r", "GCDELAY": "90s"}, "http": {"Port": "8080"}})
    assert cfg.storage.root_directory == "/r"
    assert cfg.storage.gc_delay == 90
    assert cfg.http.port == 8080


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("24h", 86400), ("1h30m", 5400), ("500ms", 0.5), ("0", 0)],
)
def test_durations_in_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"storage": {"rootDirectory": "/r", "gcDelya": "1h"}}, "storage.gcDelya"),
        ({"storage": {"rootDirectory": "/r", "gcDelay": "an hour"}}, "'an hour'"),
        ({"storage": {"rootDirectory": "/r", "gcDelay": 3600}}, "storage.gcDelay"),
        ({"storage": {"rootDirectory": "/r", "dedupe": "yes"}}, "storage.dedupe"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"port": "eighty"}}, "'eighty'"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"port": 70000}}, "http.port"),
        ({"storage": {"rootDirectory": "/r"}, "log": {"level": "loud"}}, "log.level"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"readTimeout": "0s"}}, "http.readTimeout"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"headerTimeout": 10}}, "http.headerTimeout"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"maxHeaderBytes": 10}}, "http.maxHeaderBytes"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"maxConnections": "²"}}, "http.maxConnections"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"maxHeaderFields": True}}, "http.maxHeaderFields"),
        ({"storage": {"rootDirectory": "/r"}, "htttp": {}}, "htttp"),
        ({"storage": {}}, "storage.rootDirectory"),
        ({"storage": {"rootDirectory": "/r"}, "http": {"auth": {"htpasswd": {}}}}, "http.auth"),
        ({"storage": {"rootDirectory": "/r"}, "extensions": {"search": {"enable": True}}}, "extensions.search"),
        ({"storage": {"rootDirectory": "/r", "subPaths": {"a": {"rootDirectory": "/s"}}}}, "'a'"),
        ({"storage": {"rootDirectory": "/r", "storageDriver": {"name": "gcs"}}}, "storageDriver"),
        ({"storage": {"rootDirectory": "/r", "remoteCache": True}}, "storage.remoteCache"),
        ({"storage": {"rootDirectory": "/r", "remoteCache": True,
                      "cacheDriver": {"name": "redis", "url": "redis://h/0?dial_timeout=3&bogus=1"}}}, "bogus"),
        ({"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "dynamodb"}}},
         "cachetablename"),
        ({"storage": {"rootDirectory": "/r", "cacheDriver": {"name": "memcached"}}}, "cacheDriver"),
    ],
)
def test_a_bad_key_or_value_is_named(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), (json.dumps({"storage": {"rootDirectory": "/r", "gc": 1}}), "storage.gc")],
)
def test_verify_exits_non_zero_with_the_message(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    result = verify(path)
    assert result.returncode != 0
    assert message in result.stderr


def test_yaml_is_read_like_json(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("storage:\n  rootDirectory: /r\n  commit: true\nhttp:\n  port: 6000\n")
    cfg = load_config(path)
    assert cfg.storage.commit is True
    assert cfg.http.port == 6000


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path), "comit": True}}))
    result = subprocess.run([str(BIN / "ocistore"), "serve", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "storage.comit" in result.stderr


def test_upload_session_bounds_are_read_and_checked() -> None:
    cfg = parse_config({"storage": {"rootDirectory": "/r", "maxUploads": 50, "maxUploadsPerRepository": 5,
                                    "uploadIdleTimeout": "10m"}})
    assert (cfg.storage.max_uploads, cfg.storage.max_uploads_per_repository) == (50, 5)
    assert cfg.storage.upload_idle_timeout == 600
    defaults = parse_config({"storage": {"rootDirectory": "/r"}}).storage
    assert (defaults.max_uploads, defaults.max_uploads_per_repository, defaults.upload_idle_timeout) == \
        (10000, 1000, 900)
    for bad in (0, -1, "five", True, 1 << 40):
        with pytest.raises(ConfigError, match="maxUploads"):
            parse_config({"storage": {"rootDirectory": "/r", "maxUploads": bad}})
