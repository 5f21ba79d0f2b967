"""The decision itself, without a server: zot's policy rules, the htpasswd file and its memo."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from ocistore.auth import (
    ANONYMOUS,
    CREATE,
    DELETE,
    READ,
    UPDATE,
    Access,
    Credentials,
    Htpasswd,
    HtpasswdError,
    Kind,
    Need,
    Outcome,
    Policies,
    manifest_write_actions,
)
from ocistore.config import parse_config
from ocistore.config.auth import AccessControlConfig


def policies(raw: dict[str, Any]) -> Policies:
    return Policies(AccessControlConfig.model_validate(raw, context={"file": True}))


def entry(user: str, password: str, rounds: int = 4) -> str:
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()}\n"


def basic(user: str, password: str) -> list[str]:
    return ["Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()]


def test_the_longest_matching_glob_decides_and_admin_applies_everywhere() -> None:
    p = policies({
        "repositories": {
            "**": {"defaultPolicy": ["read"]},
            "team/**": {"policies": [{"groups": ["dev"], "actions": ["read", "create"]}]},
            "team/secret/**": {"policies": [{"users": ["alice"], "actions": ["read"]}]},
        },
        "groups": {"dev": {"users": ["alice", "dave"]}},
        "adminPolicy": {"users": ["carol"], "actions": ["read", "delete"]},
    })
    alice, dave, carol, erin = (p.identity(u) for u in ("alice", "dave", "carol", "erin"))
    assert p.allows(dave, CREATE, "team/app") and p.allows(alice, CREATE, "team/app")
    # team/secret/** is longer than team/**: only it applies there, so dave's group grant does not.
    assert not p.allows(dave, READ, "team/secret/x")
    assert p.allows(alice, READ, "team/secret/x") and not p.allows(alice, CREATE, "team/secret/x")
    # defaultPolicy of ** does not apply where a longer pattern matches.
    assert p.allows(erin, READ, "other") and not p.allows(erin, READ, "team/app")
    assert p.allows(carol, DELETE, "team/secret/x") and not p.allows(carol, CREATE, "team/secret/x")
    assert not p.allows(ANONYMOUS, READ, "other")


def test_equally_long_globs_decide_in_the_files_order() -> None:
    """zot picks at random between two matching globs of one length; here the first written wins."""
    first = policies({"repositories": {"a/*": {"defaultPolicy": ["read"]}, "*/b": {"defaultPolicy": []}}})
    second = policies({"repositories": {"*/b": {"defaultPolicy": []}, "a/*": {"defaultPolicy": ["read"]}}})
    bob = first.identity("bob")
    assert first.allows(bob, READ, "a/b") and not second.allows(bob, READ, "a/b")


def test_anonymous_policy_is_for_requests_without_credentials_only() -> None:
    p = policies({"repositories": {"**": {"anonymousPolicy": ["read"]}}})
    assert p.allows(ANONYMOUS, READ, "x") and not p.allows(ANONYMOUS, CREATE, "x")
    assert not p.allows(p.identity("bob"), READ, "x")  # zot: a logged-in user gets defaultPolicy, not this


@pytest.mark.parametrize(("tags", "ref", "query", "needed"), [
    ([], "v1", [], {CREATE}),
    (["v1"], "v1", [], {UPDATE}),
    (["v1"], "sha256:" + "a" * 64, [], {CREATE}),
    (["v1"], "sha256:" + "a" * 64, ["v1"], {UPDATE}),
    (["v1"], "sha256:" + "a" * 64, ["v1", "v2"], {CREATE, UPDATE}),
    ([], "sha256:" + "a" * 64, ["v2", "-bad"], {CREATE}),
])
def test_a_manifest_put_creates_or_updates_by_whether_its_tags_exist(
        tags: list[str], ref: str, query: list[str], needed: set[str]) -> None:
    assert manifest_write_actions(tags, ref, query) == needed


def test_authorization_headers_are_read_as_zot_reads_them() -> None:
    assert Credentials.parse([]) == Credentials()
    assert Credentials.parse(["Basic Og=="]) == Credentials()  # the empty ':' of a client with none
    assert Credentials.parse(basic("a", "p:q")) == Credentials("a", "p:q")
    assert Credentials.parse(["Bearer x"]).problem
    assert Credentials.parse(["Basic !!!"]).problem
    assert Credentials.parse([*basic("a", "b"), *basic("a", "b")]).problem


def test_htpasswd_entries_must_all_be_bcrypt(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(entry("alice", "pw") + "# comment\n\n" + entry("bob", "pw").replace("$2b$", "$2y$"))
    assert Htpasswd(str(path)).users == {"alice", "bob"}
    for bad in ["carol:$apr1$abc$def\n", "carol:plain\n", "nocolon\n", entry("a", "x") + entry("a", "y")]:
        path.write_text(bad)
        with pytest.raises(HtpasswdError):
            Htpasswd(str(path))
    with pytest.raises(HtpasswdError, match="cannot read"):
        Htpasswd(str(tmp_path / "missing"))


def test_a_verified_password_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    """bcrypt is slow on purpose; Basic credentials come with every request of a push."""
    path = tmp_path / "htpasswd"
    path.write_text(entry("alice", "pw", rounds=13))
    logins = Htpasswd(str(path))
    started = time.monotonic()
    assert logins.check("alice", "pw")
    first = time.monotonic() - started
    started = time.monotonic()
    assert all(logins.check("alice", "pw") for _ in range(50))
    assert time.monotonic() - started < first / 4
    assert not logins.check("alice", "wrong") and not logins.check("nobody", "pw")


def test_passwords_past_72_bytes_compare_as_go_does(tmp_path: Path) -> None:
    """bcrypt reads 72 bytes; Go's CompareHashAndPassword (zot) accepts the longer password too."""
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{bcrypt.hashpw(b'x' * 72, bcrypt.gensalt(4)).decode()}\n")
    assert Htpasswd(str(path)).check("alice", "x" * 80)


def test_one_decision_for_every_kind_of_need(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(entry("alice", "pw") + entry("carol", "pw"))
    config = parse_config({"storage": {"rootDirectory": str(tmp_path)}, "http": {
        "auth": {"htpasswd": {"path": str(path)}, "failDelay": 2},
        "accessControl": {
            "repositories": {"pub/**": {"anonymousPolicy": ["read"]}, "a/**": {"defaultPolicy": ["read"]}},
            "adminPolicy": {"users": ["carol"], "actions": ["read"]},
            "metrics": {"users": ["carol"]},
        }}})
    access = Access(config.http)

    def decide(headers: list[str], need: Need) -> Outcome:
        return asyncio.run(access.decide(headers, need)).outcome

    alice = basic("alice", "pw")
    assert decide([], Need.on("pub/x", READ)) is Outcome.ALLOW
    assert decide([], Need.on("a/x", READ)) is Outcome.CHALLENGE
    assert decide([], Need(Kind.PROBE)) is Outcome.CHALLENGE  # mixed policies: challenge the probe
    assert decide(alice, Need(Kind.PROBE)) is Outcome.ALLOW
    assert decide(alice, Need.on("a/x", READ)) is Outcome.ALLOW
    assert decide(alice, Need.on("a/x", CREATE)) is Outcome.DENY
    wrong = asyncio.run(access.decide(basic("alice", "bad"), Need.on("pub/x", READ)))
    assert (wrong.outcome, wrong.delay) == (Outcome.CHALLENGE, 2.0)  # never anonymous after a failed login
    assert decide(alice, Need(Kind.METRICS)) is Outcome.DENY
    assert decide(basic("carol", "pw"), Need(Kind.METRICS)) is Outcome.ALLOW
    assert decide(alice, Need(Kind.ADMIN)) is Outcome.DENY
    assert decide(basic("carol", "pw"), Need(Kind.ADMIN)) is Outcome.ALLOW
    readable = access.readable(access.policies.identity("alice"))
    assert readable is not None and readable("a/x") and not readable("pub/x")
