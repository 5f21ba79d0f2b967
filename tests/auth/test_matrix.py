"""Every user against every repository and every action, mount and catalog included: each
answer must be what conftest.ACCESS_CONTROL grants, so there is no request that gets through
without its grant (a bypass) nor one refused that was granted.

The expectation is computed from the policy as zot states it, independently of ocistore's code:
the longest matching pattern's policies decide, then defaultPolicy for a logged-in user,
anonymousPolicy for a request without credentials, and adminPolicy everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx
import pytest

from tests.api.helpers import digest_of, push_blob, push_random_image
from tests.auth.conftest import ACCESS_CONTROL, Clients
from tests.servers import OcistoreServer

USERS = ["anonymous", "alice", "bob", "carol", "dave", "prom"]
AREAS = ["public", "alice", "bob", "team", "team/private", "secret", "elsewhere"]
ACTIONS = ["read", "create", "update", "delete"]


def granted(user: str, repo: str, action: str) -> bool:
    admin = ACCESS_CONTROL["adminPolicy"]
    if user in admin["users"] and action in admin["actions"]:
        return True
    groups = {g for g, members in ACCESS_CONTROL["groups"].items() if user in members["users"]}
    matching = [p for p in ACCESS_CONTROL["repositories"] if repo.startswith(p.removesuffix("**"))]
    if not matching:
        return False
    policy = ACCESS_CONTROL["repositories"][max(matching, key=len)]
    if user == "anonymous":
        return action in policy.get("anonymousPolicy", [])
    for rule in policy.get("policies", []):
        if (user in rule.get("users", []) or groups & set(rule.get("groups", []))) and action in rule["actions"]:
            return True
    return action in policy.get("defaultPolicy", [])


@dataclass
class Seeded:
    repo: str
    tag: str
    digest: str
    blob: str


@pytest.fixture(scope="module")
def seeded(guarded: OcistoreServer) -> dict[str, Seeded]:
    """One repository per area, with a tagged image, pushed by the admin."""
    out = {}
    suffix = os.urandom(4).hex()
    admin = Clients(guarded.url)
    try:
        for area in AREAS:
            repo = f"{area}/m{suffix}"
            image = push_random_image(admin.carol, repo, "v1")
            out[area] = Seeded(repo, "v1", image.digest, digest_of(image.layers[0]))
    finally:
        admin.close()
    return out


def client_of(clients: Clients, user: str) -> httpx.Client:
    return getattr(clients, user)


def allowed(resp: httpx.Response) -> bool:
    """Let in (whatever the outcome) or refused by the decision: 401/403 are refusals only."""
    return resp.status_code not in (401, 403)


@pytest.mark.parametrize("user", USERS)
def test_every_user_every_repository_every_action(clients: Clients, seeded: dict[str, Seeded], user: str) -> None:
    c = client_of(clients, user)
    wrong: list[str] = []
    for area, s in seeded.items():
        checks = {
            "read": [c.get(f"/v2/{s.repo}/manifests/{s.tag}"), c.head(f"/v2/{s.repo}/blobs/{s.blob}"),
                     c.get(f"/v2/{s.repo}/tags/list"), c.get(f"/v2/{s.repo}/referrers/{s.digest}")],
            "create": [c.post(f"/v2/{s.repo}/blobs/uploads/"),
                       c.put(f"/v2/{s.repo}/manifests/new-{user}", content=b"{}",
                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})],
            # Re-pushing an existing tag is an update (zot's rule); the body is refused only if let in.
            "update": [c.put(f"/v2/{s.repo}/manifests/{s.tag}", content=b"{}",
                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})],
            "delete": [c.delete(f"/v2/{s.repo}/blobs/sha256:{'0' * 64}"),
                       c.delete(f"/v2/{s.repo}/manifests/sha256:{'0' * 64}")],
        }
        for action, answers in checks.items():
            expected = granted(user, s.repo, action)
            for resp in answers:
                if allowed(resp) != expected:
                    wrong.append(f"{user} {action} {area}: {resp.request.method} {resp.request.url.path} "
                                 f"answered {resp.status_code}, expected {'let in' if expected else 'refused'}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("user", USERS)
def test_mounts_need_read_on_the_source_and_create_on_the_target(
        clients: Clients, seeded: dict[str, Seeded], user: str) -> None:
    c = client_of(clients, user)
    wrong: list[str] = []
    for source_area, source in seeded.items():
        for target_area, target in seeded.items():
            if source is target:
                continue
            resp = c.post(f"/v2/{target.repo}/blobs/uploads/", params={"mount": source.blob, "from": source.repo})
            may = granted(user, target.repo, "create") and granted(user, source.repo, "read")
            if (resp.status_code == 201) and not may:
                wrong.append(f"{user} mounted {source_area} -> {target_area}")
            if may and resp.status_code != 201:
                wrong.append(f"{user} could not mount {source_area} -> {target_area}: {resp.status_code}")
            if not may and granted(user, target.repo, "create") and resp.status_code in (201,):
                wrong.append(f"{user} linked a blob of {source_area} it may not read")
        # Without `from`: a blob is found only where the user may read; elsewhere a session starts.
        for source_area, source in seeded.items():
            if not granted(user, target.repo, "create") or source is target:
                continue
            resp = c.post(f"/v2/{target.repo}/blobs/uploads/", params={"mount": source.blob})
            readable = any(granted(user, s.repo, "read") for s in seeded.values() if s.blob == source.blob)
            if resp.status_code == 201 and not readable:
                wrong.append(f"{user} mounted {source_area}'s blob into {target_area} without `from`")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("user", USERS)
def test_the_catalog_lists_exactly_what_each_user_may_read(
        clients: Clients, seeded: dict[str, Seeded], user: str) -> None:
    resp = client_of(clients, user).get("/v2/_catalog", params={"n": 10000})
    if user == "anonymous" and resp.status_code == 401:
        return  # mixed policies: an anonymous client is challenged first (zot's Docker quirk)
    assert resp.status_code == 200, resp.text
    listed = set(resp.json()["repositories"])
    for s in seeded.values():
        assert (s.repo in listed) == granted(user, s.repo, "read"), (user, s.repo)


def test_the_blob_pushed_by_another_user_is_no_key(clients: Clients, seeded: dict[str, Seeded]) -> None:
    """bob knows the digest of alice's layer: pushing it through a mount gets him nothing, but
    pushing its bytes (which he then has anyway) works as any push."""
    bob_repo = f"bob/m{os.urandom(4).hex()}"
    # A layer of its own: the mount tests above may have put the seeded ones where bob reads.
    secret_blob = push_blob(clients.carol, seeded["secret"].repo, os.urandom(3000))
    resp = clients.bob.post(f"/v2/{bob_repo}/blobs/uploads/", params={"mount": secret_blob})
    assert resp.status_code == 202, resp.text
    assert clients.bob.head(f"/v2/{bob_repo}/blobs/{secret_blob}").status_code == 404
    digest = push_blob(clients.bob, bob_repo, b"bob's own bytes")
    assert clients.bob.head(f"/v2/{bob_repo}/blobs/{digest}").status_code == 200
