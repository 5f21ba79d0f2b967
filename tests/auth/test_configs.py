"""Servers with other shapes of `http.auth` / `http.accessControl`: the htpasswd file reread while
serving, htpasswd without access control, anonymous-only access control, and the scaled topology."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.api.helpers import assert_error, push_random_image
from tests.auth.conftest import ACCESS_CONTROL, PASSWORDS, REALM, auth_http, auth_server, htpasswd_text
from tests.servers import OcistoreTopology, wait_until


def status(url: str, user: str, password: str, path: str = "/v2/") -> int:
    return httpx.get(f"{url}{path}", auth=(user, password), timeout=30).status_code


def test_the_htpasswd_file_is_reread_while_serving_and_a_bad_one_keeps_the_last_good(tmp_path: Path) -> None:
    server = auth_server(tmp_path, access_control=None, passwords={"alice": "old-pw"}).start()
    path = tmp_path / "htpasswd"
    try:
        assert status(server.url, "alice", "old-pw") == 200  # remembered from here on
        path.write_text(htpasswd_text({"alice": "new-pw", "frank": "frank-pw"}))
        assert wait_until(lambda: status(server.url, "frank", "frank-pw") == 200, timeout=15)
        assert status(server.url, "alice", "old-pw") == 401  # the memo went with the old file
        assert status(server.url, "alice", "new-pw") == 200
        # Replaced by a rename, as a Kubernetes Secret is.
        staged = tmp_path / "htpasswd.new"
        staged.write_text(htpasswd_text({"gina": "gina-pw"}))
        os.replace(staged, path)
        assert wait_until(lambda: status(server.url, "gina", "gina-pw") == 200, timeout=15)
        assert status(server.url, "frank", "frank-pw") == 401
        # A broken file, then none: gina goes on logging in, and the log says why nobody new can.
        path.write_text("gina:$apr1$not-bcrypt\n")
        assert wait_until(lambda: status(server.url, "gina", "gina-pw") == 200
                          and "not a bcrypt hash" in server.log(), timeout=15)
        path.unlink()
        assert wait_until(lambda: status(server.url, "gina", "gina-pw") == 200
                          and "cannot read" in server.log(), timeout=15)
        path.write_text(htpasswd_text({"hana": "hana-pw"}))
        assert wait_until(lambda: status(server.url, "hana", "hana-pw") == 200, timeout=15)
    finally:
        server.stop()


def test_without_access_control_every_logged_in_user_may_do_anything(tmp_path: Path) -> None:
    server = auth_server(tmp_path, access_control=None).start()
    try:
        with httpx.Client(base_url=server.url, auth=("bob", "bob-pw"), timeout=60) as bob:
            image = push_random_image(bob, "any/repo", "v1")
            assert bob.get("/v2/any/repo/manifests/v1").content == image.manifest
            assert bob.get("/storage/usage").status_code == 200
            assert bob.get("/metrics").status_code == 200
        for path in ("/v2/", "/v2/any/repo/manifests/v1", "/v2/_catalog", "/storage/usage", "/metrics"):
            resp = httpx.get(f"{server.url}{path}")
            assert_error(resp, 401, "UNAUTHORIZED")
            assert resp.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        assert httpx.get(f"{server.url}/livez").status_code == 200
    finally:
        server.stop()


def test_anonymous_only_access_control_needs_no_logins(tmp_path: Path) -> None:
    """zot's config-anonymous-authz.json shape: no htpasswd, what anonymousPolicy grants and no more."""
    server = auth_server(tmp_path, passwords=None, access_control={"repositories": {
        "**": {"anonymousPolicy": ["read", "create"]},
        "infra/**": {"anonymousPolicy": ["read"]},
    }}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as anonymous:
            assert anonymous.get("/v2/").status_code == 200  # nothing needs a login: no challenge
            image = push_random_image(anonymous, "tmp/app", "v1")
            assert anonymous.get("/v2/tmp/app/manifests/v1").content == image.manifest
            assert anonymous.get("/v2/_catalog").json()["repositories"] == ["tmp/app"]
            assert_error(anonymous.delete(f"/v2/tmp/app/manifests/{image.digest}"), 401, "UNAUTHORIZED")
            assert_error(anonymous.post("/v2/infra/app/blobs/uploads/"), 401, "UNAUTHORIZED")
            assert_error(anonymous.get("/storage/usage"), 401, "UNAUTHORIZED")  # no admin can exist
            # Without an htpasswd file a header names nobody, as in zot: it is ignored.
            assert anonymous.get("/v2/tmp/app/tags/list", auth=("x", "y")).status_code == 200
    finally:
        server.stop()


def test_every_replica_of_the_topology_decides_alike(tmp_path: Path) -> None:
    """Replicas share nothing but the config and the htpasswd file, and decide alike, a changed
    file included (each notices it within a second)."""
    topology = OcistoreTopology(tmp_path, None, extra={"http": auth_http(tmp_path, ACCESS_CONTROL)}).start()
    try:
        with httpx.Client(base_url=topology.url, auth=("alice", PASSWORDS["alice"]), timeout=60) as alice:
            image = push_random_image(alice, "alice/replicated", "v1")
        for url in topology.replicas:
            assert httpx.get(f"{url}/v2/alice/replicated/manifests/v1", auth=("alice", PASSWORDS["alice"]),
                             timeout=30).content == image.manifest
            assert_error(httpx.get(f"{url}/v2/alice/replicated/manifests/v1", auth=("bob", PASSWORDS["bob"])),
                         403, "DENIED")
            assert_error(httpx.get(f"{url}/v2/alice/replicated/manifests/v1"), 401, "UNAUTHORIZED")
            assert status(url, "alice", "wrong") == 401
        (tmp_path / "htpasswd").write_text(htpasswd_text({**PASSWORDS, "alice": "rotated"}))
        for url in topology.replicas:
            assert wait_until(lambda url=url: status(url, "alice", "rotated") == 200, timeout=15)
            assert status(url, "alice", PASSWORDS["alice"]) == 401
    finally:
        topology.stop()
