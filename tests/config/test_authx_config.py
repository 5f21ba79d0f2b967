"""`http.auth.ldap`, `http.auth.bearer` and `http.auth.mtls`: what `verify` and `serve` refuse,
each problem named by its key, and zot's examples of the three accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocistore.config import parse_config
from tests.certs import CA
from tests.config.test_auth_config import refused, run, write

LDAP = {"address": "ldap.example.org", "port": 389, "baseDN": "ou=Users,dc=example,dc=org", "userAttribute": "uid"}


def credentials(tmp_path: Path, body: Any) -> str:
    path = tmp_path / "ldap-credentials.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


def signer_cert(tmp_path: Path) -> str:
    cert, _ = CA("token signer").issue("issuer", client=True).write(tmp_path, "auth")
    return str(cert)


@pytest.mark.parametrize(("ldap", "named"), [
    ({k: v for k, v in LDAP.items() if k != "address"}, "http.auth.ldap.address: required"),
    ({**LDAP, "address": ""}, "http.auth.ldap.address: invalid value ''"),
    ({k: v for k, v in LDAP.items() if k != "baseDN"}, "http.auth.ldap.baseDN: required"),
    ({**{k: v for k, v in LDAP.items() if k != "baseDN"}, "basedn": " "}, "http.auth.ldap.baseDN: invalid value ' '"),
    ({k: v for k, v in LDAP.items() if k != "userAttribute"}, "http.auth.ldap.userAttribute: required"),
    ({**LDAP, "port": 0}, "http.auth.ldap.port"),
    ({**LDAP, "bindDN": "cn=x"}, "http.auth.ldap.bindDN: not supported by ocistore (zot reads bindDN from the file"),
    ({**LDAP, "startTls": "maybe"}, "http.auth.ldap.startTLS: invalid value 'maybe'"),
])
def test_ldap_keys_zot_requires_are_named(ldap: dict[str, Any], named: str) -> None:
    assert named in refused({"auth": {"ldap": ldap}})


def test_ldap_keys_read_with_zots_meanings() -> None:
    auth = parse_config({"storage": {"rootDirectory": "/r"}, "http": {"auth": {"ldap": {
        **LDAP, "startTLS": "true", "insecure": True, "subtreeSearch": True, "userGroupAttribute": "memberOf",
        "port": "1389"}}}}).http.auth
    assert auth is not None and auth.ldap is not None
    assert auth.ldap.start_tls and auth.ldap.insecure and auth.ldap.effective_port == 1389
    ldaps = parse_config({"storage": {"rootDirectory": "/r"}, "http": {"auth": {"ldap": {
        k: v for k, v in LDAP.items() if k != "port"}}}}).http.auth
    assert ldaps is not None and ldaps.ldap is not None and ldaps.ldap.effective_port == 636  # LDAPS


@pytest.mark.parametrize(("body", "why"), [
    (None, "cannot read"),
    ({"bindDN": "cn=searcher,dc=example,dc=org"}, "bindPassword is missing or empty"),
    ({"bindPassword": "pw"}, "bindDN is missing or empty"),
    ({"bindDN": "cn=s", "bindPassword": ""}, "bindPassword is missing or empty"),
    ({"bindDN": "cn=s", "bindPassword": "pw", "bindUser": "x"}, "unknown key 'bindUser'"),
    ("{not json", "not a JSON object"),
])
def test_verify_and_serve_name_a_credentials_file_that_cannot_serve(tmp_path: Path, body: Any, why: str) -> None:
    path = credentials(tmp_path, body) if body is not None else str(tmp_path / "absent.json")
    config = write(tmp_path, {"port": 0, "auth": {"ldap": {**LDAP, "credentialsFile": path}}})
    checked = run("verify", config)
    assert checked.returncode == 1, checked.stderr
    assert "http.auth.ldap.credentialsFile" in checked.stderr and why in checked.stderr, checked.stderr
    assert "pw" not in checked.stderr.replace(path, "")  # the password itself is never shown
    served = run("serve", config)
    assert served.returncode == 2 and why in served.stderr, served.stderr


def test_verify_names_a_bad_ca_cert_and_a_bad_user_filter(tmp_path: Path) -> None:
    good = credentials(tmp_path, {"bindDN": "cn=s", "bindPassword": "secret"})
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    checked = run("verify", write(tmp_path, {"auth": {"ldap": {**LDAP, "credentialsFile": good,
                                                                "caCert": str(bad_ca)}}}))
    assert checked.returncode == 1 and "http.auth.ldap.caCert" in checked.stderr, checked.stderr
    checked = run("verify", write(tmp_path, {"auth": {"ldap": {**LDAP, "credentialsFile": good,
                                                                "userFilter": "(!(nsaccountlock=TRUE)"}}}))
    assert checked.returncode == 1 and "http.auth.ldap.userFilter" in checked.stderr, checked.stderr


def test_zots_ldap_example_verifies(tmp_path: Path) -> None:
    """zot's examples/config-ldap.json (its TLS block and log files left out), with its credentials file."""
    ldap = {"credentialsFile": credentials(tmp_path, {"bindDN": "cn=ldap-searcher,ou=Users,dc=example,dc=org",
                                                      "bindPassword": "ldap-searcher-password"}),
            "address": "ldap.example.org", "port": 389, "startTLS": False, "baseDN": "ou=Users,dc=example,dc=org",
            "userAttribute": "uid", "userFilter": "(!(nsaccountlock=TRUE))", "userGroupAttribute": "memberOf",
            "skipVerify": True, "subtreeSearch": True}
    access = {"repositories": {
        "**": {"policies": [{"users": ["charlie"], "groups": ["admins", "cn=ldap-group,ou=Groups,dc=example,dc=org"],
                             "actions": ["read", "create", "update"]}], "defaultPolicy": []},
        "tmp/**": {"defaultPolicy": ["read", "create", "update"]}},
        "adminPolicy": {"users": ["admin"], "groups": ["admins"], "actions": ["read", "create", "update", "delete"]}}
    checked = run("verify", write(tmp_path, {"realm": "zot", "auth": {"ldap": ldap, "failDelay": 5},
                                             "accessControl": access}))
    assert checked.returncode == 0, checked.stderr
    assert "ldap-searcher-password" not in checked.stdout + checked.stderr


@pytest.mark.parametrize(("bearer", "named"), [
    ({"service": "s", "cert": "/c"}, "http.auth.bearer.realm: required"),
    ({"realm": "https://auth.example.org/token", "cert": "/c"}, "http.auth.bearer.service: required"),
    ({"realm": "https://auth.example.org/token", "service": "s"}, "http.auth.bearer.cert: required"),
    ({"realm": "auth.example.org", "service": "s", "cert": "/c"}, "http.auth.bearer.realm: invalid value"),
    ({"realm": "https://a/t", "service": "", "cert": "/c"}, "http.auth.bearer.service: invalid value ''"),
    ({"realm": "https://a/t", "service": "s", "cert": "/c", "oidc": []}, "http.auth.bearer.oidc: not supported"),
])
def test_bearer_keys_are_named(bearer: dict[str, Any], named: str) -> None:
    assert named in refused({"auth": {"bearer": bearer}})


def test_bearer_stands_alone_as_in_zot() -> None:
    bearer = {"realm": "https://a/t", "service": "s", "cert": "/c"}
    combined = refused({"auth": {"bearer": bearer, "htpasswd": {"path": "/h"}}})
    assert "bearer cannot be combined with htpasswd" in combined
    assert "zot ignores accessControl" in refused({"auth": {"bearer": bearer}, "accessControl": {
        "repositories": {"**": {"anonymousPolicy": ["read"]}}}})


def test_verify_names_a_bearer_cert_that_holds_no_key(tmp_path: Path) -> None:
    bad = tmp_path / "auth.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    for cert, why in ((str(tmp_path / "absent.crt"), "cannot read"), (str(bad), "neither a PEM certificate")):
        config = write(tmp_path, {"auth": {"bearer": {"realm": "https://auth.myreg.io/auth/token",
                                                      "service": "myauth", "cert": cert}}})
        checked = run("verify", config)
        assert checked.returncode == 1 and "http.auth.bearer.cert" in checked.stderr and why in checked.stderr, \
            checked.stderr
    # zot's examples/config-bearer-auth.json, with a real certificate.
    good = write(tmp_path, {"auth": {"bearer": {"realm": "https://auth.myreg.io/auth/token", "service": "myauth",
                                                "cert": signer_cert(tmp_path)}}})
    assert run("verify", good).returncode == 0


def test_mtls_needs_a_cacert_and_counts_as_a_login(tmp_path: Path) -> None:
    ca = CA()
    ca_path = ca.write(tmp_path / "ca.crt")
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    assert "http.auth: mtls names clients by their certificates, but http.tls has no cacert" in refused(
        {"auth": {"mtls": {"identityAttributes": ["CommonName"]}}})
    # zot's examples/config-mtls.json: policies for users with no password anywhere, as mTLS names them.
    mtls = {"realm": "zot", "tls": {"cert": str(cert), "key": str(key), "cacert": str(ca_path)},
            "auth": {"mtls": {"identityAttributes": ["CommonName"]}},
            "accessControl": {"repositories": {"**": {"policies": [{"users": ["clientuser"],
                                                                    "actions": ["read", "create"]}],
                                                      "defaultPolicy": ["read"]}}}}
    assert run("verify", write(tmp_path, mtls)).returncode == 0
    del mtls["auth"]  # cacert alone is zot's IsMTLSAuthEnabled
    assert run("verify", write(tmp_path, mtls)).returncode == 0
    spiffe = {**mtls, "auth": {"mtls": {"identityAttributes": ["URI", "CommonName"],
                                        "uriSanPattern": "spiffe://example.org/workload/(.*)"}}}
    assert run("verify", write(tmp_path, spiffe)).returncode == 0
    # Without the cacert nobody could be named: the same policies are refused.
    assert "http.accessControl: grants" in refused({"accessControl": mtls["accessControl"]})
