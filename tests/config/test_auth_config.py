"""`http.auth`, `http.accessControl`, `http.realm`: zot's keys, and what stops `verify` and `serve`.

A config that reads as protected must never be served unprotected: an authentication method
ocistore does not offer is refused by name, and a half-written block that zot would take as
"no authentication" is refused too, as is an htpasswd file that is missing or not all bcrypt.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from ocistore.config import ConfigError, parse_config
from tests.servers import BIN

ROOT = {"rootDirectory": "/r"}


def refused(http: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"storage": ROOT, "http": http})
    return str(info.value)


def write(tmp_path: Path, http: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path / "data")}, "http": http}))
    return path


def htpasswd(tmp_path: Path, text: str | None = None) -> str:
    path = tmp_path / "htpasswd"
    path.write_text(text if text is not None else
                    f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}\n")
    return str(path)


def run(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ocistore"), command, str(config)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("key", ["openid", "apikey", "sessionKeysFile", "sessionDriver", "secureSession"])
def test_authentication_methods_not_offered_are_refused_by_name(key: str) -> None:
    message = refused({"auth": {"htpasswd": {"path": "/h"}, key: {}}})
    assert f"http.auth.{key}: not supported by ocistore" in message


@pytest.mark.parametrize(("http", "named"), [
    ({"auth": {}}, "http.auth: names no authentication method"),
    ({"auth": {"failDelay": 5}}, "http.auth: names no authentication method"),
    ({"auth": {"htpasswd": {}}}, "http.auth.htpasswd.path: required"),
    ({"auth": {"htpasswd": {"path": ""}}}, "http.auth.htpasswd.path: invalid value ''"),
    ({"accessControl": {"repositories": {"**": {"defaultPolicy": ["read"]}}}}, "http.accessControl: grants"),
    ({"accessControl": {"repositories": {"**": {"policies": [{"users": ["a"], "actions": ["read"]}]}}}},
     "http.accessControl: grants"),
    ({"accessControl": {"adminPolicy": {"users": ["a"], "actions": ["read"]}}}, "http.accessControl: grants"),
    ({"accessControl": {"metrics": {"users": ["prom"]}}}, "http.accessControl: grants"),
])
def test_a_half_configured_block_zot_would_serve_without_authentication_is_refused(
        http: dict[str, Any], named: str) -> None:
    assert named in refused(http)


@pytest.mark.parametrize(("access", "named"), [
    ({"repositories": {"[a-": {}}}, "http.accessControl.repositories: '[a-' is no valid glob"),
    ({"repositories": {"**": {"anonymousPolicy": ["raed"]}}}, "anonymousPolicy.0: invalid value 'raed'"),
    ({"repositories": {"**": {"anonymousPolicy": ["detectManifestCollision"]}}}, "detectManifestCollision"),
    ({"repositories": {"**": {"policies": [{"users": ["a"], "actions": ["read"], "conditions": []}]}}},
     "policies.0.conditions: not supported by ocistore"),
    ({"repositories": {"**": {"defaultPolicies": ["read"]}}}, "did you mean defaultPolicy?"),
])
def test_bad_globs_actions_and_keys_of_policies_are_named(access: dict[str, Any], named: str) -> None:
    assert named in refused({"auth": {"htpasswd": {"path": "/h"}}, "accessControl": access})


def test_zots_keys_read_with_zots_defaults() -> None:
    http = parse_config({"storage": ROOT, "http": {
        "realm": "", "auth": {"htpasswd": {"path": "/h"}, "failDelay": "3"},
        "accessControl": {
            "groups": {"dev": {"users": "alice"}},
            "repositories": {"**": {"policies": [{"users": ["bob"], "groups": ["dev"], "actions": ["read"]}],
                                    "anonymousPolicy": ["read"]}},
            "metrics": {"anonymousPolicy": ["read"]},
        }}}).http
    assert http.realm == "Authorization Required"  # what zot answers for an empty realm
    assert http.auth is not None and http.auth.fail_delay == 3
    assert http.access_control is not None and http.access_control.groups["dev"].users == ["alice"]
    assert parse_config({"storage": ROOT}).http.auth is None
    assert "http.realm" in refused({"realm": "caf\u00e9\n"})  # it goes into a header


def test_verify_and_serve_stop_on_a_missing_or_non_bcrypt_htpasswd_file(tmp_path: Path) -> None:
    for text, why in [(None, "cannot read"), ("alice:$apr1$x$y\n", "not a bcrypt hash"),
                      ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "not a bcrypt hash")]:
        path = tmp_path / "htpasswd"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
        config = write(tmp_path, {"port": 0, "auth": {"htpasswd": {"path": str(path)}}})
        checked = run("verify", config)
        assert checked.returncode == 1 and "http.auth.htpasswd.path" in checked.stderr and why in checked.stderr
        served = run("serve", config)
        assert served.returncode == 2 and why in served.stderr, served.stderr
    config = write(tmp_path, {"auth": {"htpasswd": {"path": htpasswd(tmp_path)}}})
    assert run("verify", config).returncode == 0


def test_zots_access_control_examples_verify(tmp_path: Path) -> None:
    """zot's examples/config-anonymous-authz.json and config-metrics-authz.json, and its
    config-policy.json but for the CEL conditions of one policy (refused by name)."""
    anonymous = {"realm": "zot", "accessControl": {"repositories": {
        "**": {"anonymousPolicy": ["read", "create"]}, "tmp/**": {"anonymousPolicy": ["read", "create", "update"]},
        "infra/**": {"anonymousPolicy": ["read"]}, "repos2/repo": {"anonymousPolicy": ["read"]}}}}
    assert run("verify", write(tmp_path, anonymous)).returncode == 0
    metrics = {"auth": {"htpasswd": {"path": htpasswd(tmp_path)}}, "accessControl": {
        "metrics": {"users": ["metrics"]},
        "repositories": {"**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read", "create"]}}}}
    assert run("verify", write(tmp_path, metrics)).returncode == 0
    policy: dict[str, Any] = {"auth": {"htpasswd": {"path": htpasswd(tmp_path)}}, "accessControl": {
        "groups": {"group1": {"users": ["jack", "john", "jane", "ana"]}, "group2": {"users": ["alice", "mike"]}},
        "repositories": {
            "**": {"policies": [{"users": ["charlie"], "groups": ["admins", "developers", "group1"],
                                 "actions": ["read", "create", "update"]}], "defaultPolicy": ["read", "create"]},
            "infra/*": {"policies": [{"users": ["mallory"], "actions": ["create", "read"]}],
                        "defaultPolicy": ["read"]},
            "prod/**": {"policies": [{"users": ["alice"], "actions": ["read"], "conditions": [
                {"expression": 'req.referenceType == "digest"', "message": "digests only"}]}]},
        },
        "adminPolicy": {"users": ["admin"], "groups": ["admins"], "actions": ["read", "create", "update", "delete"]},
    }}
    checked = run("verify", write(tmp_path, policy))
    assert checked.returncode == 2 and "conditions: not supported by ocistore" in checked.stderr
    del policy["accessControl"]["repositories"]["prod/**"]
    assert run("verify", write(tmp_path, policy)).returncode == 0
