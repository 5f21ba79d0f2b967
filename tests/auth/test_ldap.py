"""`http.auth.ldap` against a real slapd (slapd.py): the service account's search, the user's
bind, groups from `memberOf` in zot policies, failures (wrong password, unreachable
directory, bad TLS) never letting anyone in, and logins remembered briefly, forgotten on SIGHUP.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error, push_random_image
from tests.auth.conftest import FAIL_DELAY, REALM, auth_server
from tests.auth.slapd import BUILDERS, READERS, SERVICE_DN, SERVICE_PW, SUFFIX, USERS, Slapd
from tests.e2e.images import Image, build_umoci_image, skopeo, tag_digest
from tests.servers import OcistoreServer, free_port, wait_until

CHALLENGE = f'Basic realm="{REALM}"'
# Groups are the directory's own names for them (memberOf: DNs), as zot takes them.
ACCESS: dict[str, Any] = {
    "repositories": {
        "builds/**": {"policies": [{"groups": [BUILDERS], "actions": ["read", "create", "update"]}]},
        "people/**": {"policies": [{"users": ["lara", "alice"], "actions": ["read", "create", "update", "delete"]}],
                      "defaultPolicy": ["read"]},
        "docs/**": {"policies": [{"groups": [READERS, "local"], "actions": ["read", "create"]}]},
    },
    "groups": {"local": {"users": ["lara"]}},
}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd")).start()
    try:
        yield server
    finally:
        server.stop()


def credentials_file(directory: Path, bind_dn: str = SERVICE_DN, bind_password: str = SERVICE_PW) -> str:
    path = directory / "ldap-credentials.json"
    path.write_text(json.dumps({"bindDN": bind_dn, "bindPassword": bind_password}))
    return str(path)


def ldap_block(slapd: Slapd, directory: Path, **keys: Any) -> dict[str, Any]:
    """zot's config-ldap.json shape, against the test's slapd (plain LDAP unless keys say otherwise)."""
    return {"credentialsFile": credentials_file(directory), "address": "127.0.0.1", "port": slapd.port,
            "insecure": True, "startTLS": False, "baseDN": f"ou=people,{SUFFIX}", "userAttribute": "uid",
            "userGroupAttribute": "memberOf", "subtreeSearch": True, **keys}


def ldap_server(workdir: Path, ldap: dict[str, Any], access: dict[str, Any] | None = ACCESS,
                passwords: dict[str, str] | None = None) -> OcistoreServer:
    """A server whose http.auth has `ldap` beside (with `passwords`) an htpasswd file."""
    server = auth_server(workdir, access_control=access, passwords=passwords or {"alice": "alice-pw"})
    config = json.loads(server.config_path.read_text())
    config["http"]["auth"]["ldap"] = ldap
    server.config_path.write_text(json.dumps(config, indent=2))
    return server


@pytest.fixture(scope="module")
def ldap_registry(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    workdir = tmp_path_factory.mktemp("ldap-registry")
    server = ldap_server(workdir, ldap_block(slapd, workdir)).start()
    try:
        yield server
    finally:
        server.stop()


def as_user(server: OcistoreServer, uid: str, password: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(uid, password if password is not None else USERS[uid][1]),
                        timeout=60)


def status(server: OcistoreServer, uid: str, password: str | None = None, path: str = "/v2/") -> int:
    with as_user(server, uid, password) as client:
        return client.get(path).status_code


def test_ldap_users_log_in_and_get_what_their_groups_grant(ldap_registry: OcistoreServer, slapd: Slapd) -> None:
    with as_user(ldap_registry, "lara") as lara, as_user(ldap_registry, "milo") as milo, \
            as_user(ldap_registry, "nina") as nina:
        assert lara.get("/v2/").json() == {}
        mine = push_random_image(lara, "people/lara/app", "v1")  # a policy naming her
        assert milo.get("/v2/people/lara/app/manifests/v1").content == mine.manifest  # defaultPolicy
        assert_error(milo.delete(f"/v2/people/lara/app/manifests/{mine.digest}"), 403, "DENIED")
        built = push_random_image(lara, "builds/web", "v1")  # through memberOf: cn=builders
        # nina is two levels below baseDN: found by the subtree search, in builders too.
        assert nina.get("/v2/builds/web/manifests/v1").content == built.manifest
        push_random_image(nina, "builds/web", "v2")
        assert_error(milo.post("/v2/builds/web/blobs/uploads/"), 403, "DENIED")  # readers only
        # accessControl.groups and the directory's groups add up: lara is in "local", milo in readers.
        push_random_image(lara, "docs/a", "v1")
        push_random_image(milo, "docs/b", "v1")
        assert_error(nina.get("/v2/docs/a/tags/list"), 403, "DENIED")
    # An htpasswd user still logs in beside LDAP, checked first.
    with httpx.Client(base_url=ldap_registry.url, auth=("alice", "alice-pw"), timeout=60) as alice:
        push_random_image(alice, "people/alice/app", "v1")


def test_a_wrong_password_an_unknown_user_and_an_empty_password_are_401(ldap_registry: OcistoreServer) -> None:
    for uid, password in (("lara", "not-her-password"), ("mallory", "anything"), ("lara", ""),
                          ("lara", USERS["milo"][1]), ("*", USERS["lara"][1])):
        started = time.monotonic()
        with httpx.Client(base_url=ldap_registry.url, auth=(uid, password), timeout=60) as client:
            resp = client.get("/v2/people/lara/app/tags/list")
        assert_error(resp, 401, "UNAUTHORIZED")
        assert resp.headers["WWW-Authenticate"] == CHALLENGE
        assert time.monotonic() - started >= FAIL_DELAY
    assert "login of 'lara' refused" in ldap_registry.log()


def test_a_push_binds_once_and_sighup_forgets_the_login(ldap_registry: OcistoreServer, slapd: Slapd,
                                                         tmp_path: Path) -> None:
    """A push is many requests with the same credentials: one bind, then the login is
    remembered (60 s). A password changed in the directory meanwhile still works until then,
    or until SIGHUP makes every replica forget."""
    hangup(ldap_registry)  # whatever earlier tests left remembered
    before = slapd.binds_of("nina")
    with as_user(ldap_registry, "nina") as nina:
        for tag in ("a", "b", "c"):
            push_random_image(nina, "builds/cached", tag)
    assert slapd.binds_of("nina") == before + 1
    old = USERS["nina"][1]
    slapd.set_password("nina", "nina-new-pw")
    try:
        assert status(ldap_registry, "nina", old) == 200  # remembered
        hangup(ldap_registry)
        assert status(ldap_registry, "nina", old) == 401
        assert status(ldap_registry, "nina", "nina-new-pw") == 200
    finally:
        slapd.set_password("nina", old)


def hangup(server: OcistoreServer) -> None:
    """SIGHUP, returning once the server says it forgot its LDAP logins."""
    seen = server.log().count("LDAP logins forgotten")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: server.log().count("LDAP logins forgotten") > seen, timeout=15), server.log()


def test_an_unreachable_directory_refuses_its_users_and_says_why(slapd: Slapd, tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    server = ldap_server(tmp_path, ldap_block(slapd, tmp_path, port=dead),
                         access={"repositories": {"**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]}}})
    server.start()
    try:
        started = time.monotonic()
        with as_user(server, "lara") as lara:
            refused = lara.get("/v2/any/repo/tags/list")
        assert_error(refused, 401, "UNAUTHORIZED")  # never anonymous, although anonymous may read
        assert time.monotonic() - started < 10
        assert wait_until(lambda: f"LDAP ldap://127.0.0.1:{dead} cannot be reached" in server.log(), timeout=10)
        with httpx.Client(base_url=server.url, auth=("alice", "alice-pw"), timeout=30) as alice:
            assert alice.get("/v2/").status_code == 200  # htpasswd does not depend on it
    finally:
        server.stop()


def test_a_service_account_that_cannot_bind_refuses_everyone(slapd: Slapd, tmp_path: Path) -> None:
    block = ldap_block(slapd, tmp_path)
    block["credentialsFile"] = credentials_file(tmp_path, bind_password="wrong")
    server = ldap_server(tmp_path, block).start()
    try:
        assert status(server, "lara") == 401
        assert wait_until(lambda: f"the search bind as {SERVICE_DN} failed" in server.log(), timeout=10)
    finally:
        server.stop()


def test_only_one_level_is_searched_without_subtree_search(slapd: Slapd, tmp_path: Path) -> None:
    server = ldap_server(tmp_path, ldap_block(slapd, tmp_path, subtreeSearch=False)).start()
    try:
        assert status(server, "lara") == 200
        assert status(server, "nina") == 401  # in ou=staff, below the level searched
    finally:
        server.stop()


def test_a_user_filter_narrows_who_may_log_in(slapd: Slapd, tmp_path: Path) -> None:
    server = ldap_server(tmp_path, ldap_block(slapd, tmp_path, userFilter=f"(memberOf={BUILDERS})")).start()
    try:
        assert status(server, "lara") == 200
        assert status(server, "milo") == 401
    finally:
        server.stop()


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_tls_to_the_directory_is_verified_against_its_ca(slapd: Slapd, tmp_path: Path, transport: str) -> None:
    """zot's keys: insecure true with startTLS upgrades plain LDAP; insecure false is LDAPS.
    Either way the server's certificate must verify against caCert, unless skipVerify."""
    keys: dict[str, Any] = {"insecure": True, "startTLS": True} if transport == "starttls" else \
        {"insecure": False, "port": slapd.ldaps_port}
    good = ldap_server(tmp_path / "good", ldap_block(slapd, _dir(tmp_path / "good"), caCert=str(slapd.ca_path),
                                                     **keys)).start()
    try:
        assert status(good, "lara") == 200
    finally:
        good.stop()
    untrusted = ldap_server(tmp_path / "untrusted", ldap_block(slapd, _dir(tmp_path / "untrusted"), **keys)).start()
    try:
        assert status(untrusted, "lara") == 401  # the system's CAs do not know the test's
        assert wait_until(lambda: "certificate verify failed" in untrusted.log().lower(), timeout=10), \
            untrusted.log()
    finally:
        untrusted.stop()
    skipping = ldap_server(tmp_path / "skip", ldap_block(slapd, _dir(tmp_path / "skip"), skipVerify=True,
                                                         **keys)).start()
    try:
        assert status(skipping, "lara") == 200
    finally:
        skipping.stop()


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build_umoci_image(tmp_path_factory.mktemp("ldap-image") / "layout", "v1",
                             [{"etc/greeting": b"hello through LDAP\n"}])


def test_skopeo_pushes_and_pulls_with_ldap_credentials(ldap_registry: OcistoreServer, image: Image,
                                                        tmp_path: Path) -> None:
    ref = f"docker://{ldap_registry.url.removeprefix('http://')}/builds/skopeo:v1"
    skopeo("copy", "--dest-tls-verify=false", f"--dest-creds=lara:{USERS['lara'][1]}", "--preserve-digests",
           image.ref, ref)
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"--src-creds=nina:{USERS['nina'][1]}", "--preserve-digests",
           ref, f"oci:{out}:v1")
    assert tag_digest(out, "v1") == image.digest
    refused = skopeo("copy", "--dest-tls-verify=false", "--dest-creds=lara:wrong", image.ref, ref, check=False)
    assert refused.returncode != 0 and ("401" in refused.stderr or "unauthorized" in refused.stderr.lower())
