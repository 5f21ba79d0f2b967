"""`http.tls`, `http.ratelimit` and zot's `mtls` block: read as zot writes them, refused by
name when wrong; `verify` loads the TLS files as `serve` would and names the key at fault."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ocistore.config import ConfigError, parse_config
from ocistore.config.tls import MTLSConfig
from tests.certs import CA
from tests.servers import BIN

ROOT = {"rootDirectory": "/r"}


def http(**keys: Any) -> dict[str, Any]:
    return {"storage": ROOT, "http": keys}


def test_zots_tls_and_ratelimit_blocks_are_read() -> None:
    cfg = parse_config(http(TLS={"Cert": "/c.pem", "KEY": "/k.pem", "CACert": "/ca.pem"},
                            RateLimit={"Rate": "10", "Methods": [{"Method": "GET", "Rate": 5}]}))
    assert cfg.http.tls is not None
    assert (cfg.http.tls.cert, cfg.http.tls.key, cfg.http.tls.cacert) == ("/c.pem", "/k.pem", "/ca.pem")
    assert cfg.http.ratelimit is not None and cfg.http.ratelimit.rate == 10
    assert [(m.method, m.rate) for m in cfg.http.ratelimit.methods] == [("GET", 5)]
    plain = parse_config(http())
    assert plain.http.tls is None and plain.http.ratelimit is None


@pytest.mark.parametrize(("keys", "named"), [
    ({"tls": {"cert": "/c.pem"}}, "http.tls.key: required"),
    ({"tls": {"key": "/k.pem", "cacert": "/ca.pem"}}, "http.tls.cert: required"),
    ({"tls": {"cert": "/c.pem", "key": " "}}, "http.tls.key"),
    ({"tls": {"cert": "/c.pem", "key": "/k", "cacrt": "/ca"}}, "did you mean cacert?"),
    ({"ratelimit": {"rate": 0}}, "http.ratelimit.rate"),
    ({"ratelimit": {"rate": "fast"}}, "http.ratelimit.rate"),
    ({"ratelimit": {"methods": [{"method": "get", "rate": 1}]}}, "in capitals"),
    ({"ratelimit": {"methods": [{"method": "GET"}]}}, "http.ratelimit.methods.0.rate: required"),
    ({"ratelimit": {"methods": {"GET": 1}}}, "http.ratelimit.methods"),
    ({"ratelimit": {"burst": 3}}, "http.ratelimit.burst"),
])
def test_a_bad_tls_or_ratelimit_key_is_named(keys: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(http(**keys))
    assert named in str(info.value)


def test_zots_mtls_block_is_checked() -> None:
    mtls = MTLSConfig.model_validate({"identityAttributes": ["uri", "CN"],
                                      "uriSanPattern": "spiffe://example.org/workload/(.*)"},
                                     context={"file": True})
    assert mtls.identity_attributes == ["URI", "CommonName"]
    assert MTLSConfig().identity_attributes == ["CommonName"]
    for bad, why in [({"identityAttributes": ["Organization"]}, "not an identity attribute"),
                     ({"uriSanPattern": "spiffe://(unclosed"}, "not a regular expression"),
                     ({"uriSanPattern": "spiffe://.*"}, "needs a group"),
                     ({"uriSanIndex": -1}, "uriSanIndex")]:
        with pytest.raises(ValueError, match=why):
            MTLSConfig.model_validate(bad)


# --- verify: the files, loaded as serve loads them

def verify(tmp_path: Path, tls: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path / "data")},
                                "http": {"address": "127.0.0.1", "port": "5000", "tls": tls}}))
    return subprocess.run([str(BIN / "ocistore"), "verify", str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    ca = CA()
    cert, key = ca.issue("localhost").write(tmp_path / "pki", "server")
    return {"cert": str(cert), "key": str(key), "cacert": str(ca.write(tmp_path / "pki" / "ca.crt"))}


def test_verify_accepts_a_pair_and_a_ca_and_says_https(tmp_path: Path, files: dict[str, str]) -> None:
    result = verify(tmp_path, files)
    assert result.returncode == 0, result.stderr
    assert "listens on https://127.0.0.1:5000 (client certificates from" in result.stdout


def test_verify_names_a_missing_or_unreadable_file(tmp_path: Path, files: dict[str, str]) -> None:
    result = verify(tmp_path, {**files, "cert": str(tmp_path / "nowhere.pem")})
    assert result.returncode == 1
    assert "http.tls.cert" in result.stderr and "cannot read" in result.stderr
    result = verify(tmp_path, {**files, "key": str(tmp_path / "nowhere.key")})
    assert result.returncode == 1 and "http.tls.key" in result.stderr


def test_verify_names_a_key_of_another_certificate(tmp_path: Path, files: dict[str, str]) -> None:
    _, other_key = CA().issue("other").write(tmp_path / "other", "other")
    result = verify(tmp_path, {**files, "key": str(other_key)})
    assert result.returncode == 1
    assert "http.tls.key" in result.stderr and "not the key of the certificate" in result.stderr


def test_verify_names_files_that_are_not_pem(tmp_path: Path, files: dict[str, str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for key, what in (("cert", "no PEM certificate"), ("key", "no PEM private key"), ("cacert", "no PEM certificate")):
        result = verify(tmp_path, {**files, key: str(junk)})
        assert result.returncode == 1, key
        assert f"http.tls.{key}" in result.stderr and what in result.stderr, result.stderr
    # A key given as the certificate: no certificate in it.
    result = verify(tmp_path, {**files, "cert": files["key"]})
    assert result.returncode == 1 and "http.tls.cert" in result.stderr


def test_verify_refuses_an_encrypted_key(tmp_path: Path, files: dict[str, str]) -> None:
    issued = CA().issue("localhost")
    cert, key = issued.write(tmp_path / "enc", "server")
    key.write_bytes(issued.key_pem(b"secret"))
    result = verify(tmp_path, {"cert": str(cert), "key": str(key)})
    assert result.returncode == 1
    assert "http.tls.key" in result.stderr and "encrypted" in result.stderr


def test_serve_refuses_bad_tls_files_before_listening(tmp_path: Path, files: dict[str, str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path / "data")},
                                "http": {"port": "0", "tls": {**files, "key": str(tmp_path / "none")}}}))
    result = subprocess.run([str(BIN / "ocistore"), "serve", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "http.tls.key" in result.stderr
