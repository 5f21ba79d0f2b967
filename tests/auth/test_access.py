"""Logins and zot's access-control policies against a running server (see conftest.py for who
may do what)."""

from __future__ import annotations

import os
import time

import httpx

from tests.api.helpers import assert_error, digest_of, open_session, push_blob, push_random_image
from tests.auth.conftest import FAIL_DELAY, REALM, Clients
from tests.servers import OcistoreServer, blob_file

CHALLENGE = f'Basic realm="{REALM}"'


def assert_challenged(resp: httpx.Response) -> None:
    assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


def test_htpasswd_users_log_in_and_others_are_challenged(clients: Clients) -> None:
    assert clients.alice.get("/v2/").status_code == 200
    assert_challenged(clients.with_password("alice", "bob-pw").get("/v2/"))
    assert_challenged(clients.with_password("mallory", "alice-pw").get("/v2/"))
    bearer = httpx.get(f"{clients.url}/v2/", headers={"Authorization": "Bearer abc"})
    assert_challenged(bearer)


def test_docker_is_challenged_on_the_probe_when_anonymous_and_user_policies_mix(clients: Clients) -> None:
    """zot's Docker quirk: a 200 on an anonymous `GET /v2/` makes Docker (and containers/image)
    never send the credentials they hold, so it is challenged, whatever the client."""
    for headers in ({}, {"User-Agent": "docker/27.0.3 go/go1.22.5"}, {"Authorization": "Basic Og=="}):
        resp = httpx.get(f"{clients.url}/v2/", headers=headers)
        assert_challenged(resp)
    assert clients.dave.get("/v2/").json() == {}


def test_a_wrong_password_is_401_even_where_anonymous_may_read(clients: Clients, tag: str) -> None:
    repo = f"public/{tag}"
    image = push_random_image(clients.carol, repo, "v1")
    assert clients.anonymous.get(f"/v2/{repo}/manifests/v1").content == image.manifest
    assert clients.alice.get(f"/v2/{repo}/manifests/v1").content == image.manifest  # defaultPolicy
    assert_challenged(clients.with_password("alice", "nope").get(f"/v2/{repo}/manifests/v1"))
    assert_challenged(httpx.get(f"{clients.url}/v2/{repo}/manifests/v1",
                                headers={"Authorization": "Basic bm9jb2xvbg=="}))  # "nocolon"


def test_a_failed_login_is_answered_after_fail_delay(clients: Clients, tag: str) -> None:
    wrong = clients.with_password("bob", "guess")
    started = time.monotonic()
    assert_challenged(wrong.get(f"/v2/public/{tag}/tags/list"))
    assert time.monotonic() - started >= FAIL_DELAY
    # A request without credentials is challenged at once: it is no failed login.
    started = time.monotonic()
    assert_challenged(clients.anonymous.get(f"/v2/bob/{tag}/tags/list"))
    assert time.monotonic() - started < FAIL_DELAY


def test_users_and_groups_get_what_their_policies_grant(clients: Clients, tag: str) -> None:
    mine = push_random_image(clients.alice, f"alice/{tag}", "v1")
    assert clients.alice.get(f"/v2/alice/{tag}/manifests/v1").content == mine.manifest
    assert_error(clients.bob.get(f"/v2/alice/{tag}/manifests/v1"), 403, "DENIED")
    assert_error(clients.bob.post(f"/v2/alice/{tag}/blobs/uploads/"), 403, "DENIED")
    assert_challenged(clients.anonymous.get(f"/v2/alice/{tag}/manifests/v1"))
    # dave is in dev, as alice is: team/** is theirs to read, create and update, not to delete.
    team = push_random_image(clients.dave, f"team/{tag}", "v1")
    assert clients.alice.get(f"/v2/team/{tag}/manifests/v1").content == team.manifest
    push_random_image(clients.alice, f"team/{tag}", "v1")  # an update
    assert_error(clients.dave.delete(f"/v2/team/{tag}/manifests/v1"), 403, "DENIED")
    assert_error(clients.bob.get(f"/v2/team/{tag}/tags/list"), 403, "DENIED")
    # team/private/** is the longer pattern there: alice may only read, dave nothing.
    assert_error(clients.alice.post(f"/v2/team/private/{tag}/blobs/uploads/"), 403, "DENIED")
    push_random_image(clients.carol, f"team/private/{tag}", "v1")
    assert clients.alice.get(f"/v2/team/private/{tag}/tags/list").json()["tags"] == ["v1"]
    assert_error(clients.dave.get(f"/v2/team/private/{tag}/tags/list"), 403, "DENIED")


def test_create_is_not_update_and_not_delete(clients: Clients, tag: str) -> None:
    """bob may create in bob/**: a new tag yes, moving an existing tag or deleting no."""
    repo = f"bob/{tag}"
    first = push_random_image(clients.bob, repo, "v1")
    second = push_random_image(clients.bob, repo, "v2")
    moved = clients.bob.put(f"/v2/{repo}/manifests/v1", content=second.manifest,
                            headers={"Content-Type": second.media_type})
    assert_error(moved, 403, "DENIED")
    by_digest = clients.bob.put(f"/v2/{repo}/manifests/{second.digest}?tag=v1", content=second.manifest,
                                headers={"Content-Type": second.media_type})
    assert_error(by_digest, 403, "DENIED")
    assert clients.bob.put(f"/v2/{repo}/manifests/{second.digest}?tag=v3", content=second.manifest,
                           headers={"Content-Type": second.media_type}).status_code == 201
    assert_error(clients.bob.delete(f"/v2/{repo}/manifests/v2"), 403, "DENIED")
    assert_error(clients.bob.delete(f"/v2/{repo}/blobs/{digest_of(first.config)}"), 403, "DENIED")
    assert clients.bob.get(f"/v2/{repo}/manifests/v1").content == first.manifest
    assert clients.bob.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1", "v2", "v3"]


def test_the_admin_may_do_anything_anywhere(clients: Clients, tag: str) -> None:
    for repo in (f"secret/{tag}", f"alice/{tag}", f"team/private/{tag}"):
        image = push_random_image(clients.carol, repo, "v1")
        assert clients.carol.get(f"/v2/{repo}/manifests/v1").content == image.manifest
        assert clients.carol.delete(f"/v2/{repo}/manifests/v1").status_code == 202
    assert_error(clients.alice.get(f"/v2/secret/{tag}/tags/list"), 403, "DENIED")


def test_a_refusal_never_tells_whether_the_repository_exists(clients: Clients, tag: str) -> None:
    push_random_image(clients.carol, f"secret/{tag}", "v1")
    for path in (f"/v2/secret/{tag}/manifests/v1", f"/v2/secret/{tag}-none/manifests/v1",
                 f"/v2/secret/{tag}/referrers/sha256:{'0' * 64}", f"/v2/secret/{tag}-none/tags/list"):
        denied = clients.bob.get(path)
        assert_error(denied, 403, "DENIED")
        assert denied.json() == clients.bob.get(f"/v2/secret/{tag}-other/manifests/v9").json()
        assert_challenged(clients.anonymous.get(path))
        if "/manifests/" in path:
            assert clients.bob.head(path).status_code == 403


def test_the_catalog_lists_only_what_the_caller_may_read(clients: Clients, tag: str) -> None:
    repos = [f"public/{tag}", f"alice/{tag}", f"bob/{tag}", f"team/{tag}", f"team/private/{tag}", f"secret/{tag}"]
    for repo in repos:
        push_random_image(clients.carol, repo, "v1")

    def listed(client: httpx.Client) -> list[str]:
        resp = client.get("/v2/_catalog")
        assert resp.status_code == 200, resp.text
        return [r for r in resp.json()["repositories"] if r.endswith(f"/{tag}")]

    assert listed(clients.anonymous) == [f"public/{tag}"]
    assert listed(clients.alice) == sorted([f"alice/{tag}", f"public/{tag}", f"team/{tag}", f"team/private/{tag}"])
    assert listed(clients.bob) == sorted([f"bob/{tag}", f"public/{tag}"])
    assert listed(clients.dave) == sorted([f"public/{tag}", f"team/{tag}"])
    assert listed(clients.carol) == sorted(repos)
    assert_challenged(clients.with_password("carol", "x").get("/v2/_catalog"))


def test_a_mount_from_a_repository_the_caller_may_not_read_is_refused(
        clients: Clients, guarded: OcistoreServer, tag: str) -> None:
    secret = os.urandom(500)
    digest = push_blob(clients.carol, f"secret/{tag}", secret)
    target = f"alice/{tag}"
    refused = clients.alice.post(f"/v2/{target}/blobs/uploads/?mount={digest}&from=secret/{tag}")
    assert_error(refused, 403, "DENIED")
    assert_challenged(clients.anonymous.post(f"/v2/{target}/blobs/uploads/?mount={digest}&from=secret/{tag}"))
    assert_error(clients.alice.head(f"/v2/{target}/blobs/{digest}"), 404, None)
    assert not blob_file(guarded.root, target, digest).exists()


def test_a_mount_without_from_finds_only_blobs_the_caller_may_read(
        clients: Clients, guarded: OcistoreServer, tag: str) -> None:
    """The CVE-2024-39897 class: knowing a digest must not copy a blob out of a repository one
    may not read, dedupe's holder index notwithstanding; the mount becomes an upload session."""
    secret = os.urandom(700)
    digest = push_blob(clients.carol, f"secret/{tag}", secret)
    target = f"alice/{tag}"
    resp = clients.alice.post(f"/v2/{target}/blobs/uploads/?mount={digest}")
    assert resp.status_code == 202, resp.text
    assert "/blobs/uploads/" in resp.headers["Location"]
    assert_error(clients.alice.get(f"/v2/{target}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert not blob_file(guarded.root, target, digest).exists()
    # A blob in a repository alice may read is mounted, with or without `from`.
    readable = os.urandom(600)
    shared = push_blob(clients.carol, f"team/{tag}", readable)
    resp = clients.alice.post(f"/v2/{target}/blobs/uploads/?mount={shared}")
    assert resp.status_code == 201, resp.text
    assert clients.alice.get(f"/v2/{target}/blobs/{shared}").content == readable
    other = f"alice/{tag}-2"
    resp = clients.alice.post(f"/v2/{other}/blobs/uploads/?mount={shared}&from=team/{tag}")
    assert resp.status_code == 201, resp.text


def test_an_upload_session_belongs_to_who_may_create_there(clients: Clients, tag: str) -> None:
    location = open_session(clients.alice, f"alice/{tag}")
    assert_error(clients.bob.patch(location, content=b"x"), 403, "DENIED")
    assert_error(clients.bob.get(location), 403, "DENIED")
    assert_challenged(clients.anonymous.delete(location))
    assert clients.alice.get(location).status_code == 204


def test_operations_endpoints_are_for_admins_and_metrics_users(clients: Clients) -> None:
    assert clients.prom.get("/metrics").status_code == 200
    assert_error(clients.carol.get("/metrics"), 403, "DENIED")  # zot: only metrics.users
    assert_challenged(clients.anonymous.get("/metrics"))
    for path in ("/storage/usage", "/scrub/report"):
        assert clients.carol.get(path).status_code == 200
        assert_error(clients.alice.get(path), 403, "DENIED")
        assert_challenged(clients.anonymous.get(path))
    for path in ("/livez", "/readyz"):
        assert clients.anonymous.get(path).status_code == 200
