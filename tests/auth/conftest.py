"""A real `ocistore serve` with htpasswd logins and zot access-control policies.

The passwords are hashed here with bcrypt (cost 4, so the suite stays quick; the memo test in
test_policy.py uses a slow cost). `guarded` is shared by the module's tests, so each test works
in repositories named after itself (`names`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.servers import OcistoreServer

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "prom": "prom-pw"}
REALM = "ocistore tests"
FAIL_DELAY = 1

# alice: her own alice/**, and team/** through the dev group; bob: bob/** without update or delete;
# dave: team/** through dev; carol: admin; prom: metrics. public/** is readable by anonymous requests
# (anonymousPolicy) and by every logged-in user (defaultPolicy); secret/** by admins only.
ACCESS_CONTROL: dict[str, Any] = {
    "groups": {"dev": {"users": ["alice", "dave"]}},
    "repositories": {
        "public/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
        "alice/**": {"policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]}]},
        "bob/**": {"policies": [{"users": ["bob"], "actions": ["read", "create"]}]},
        "team/**": {"policies": [{"groups": ["dev"], "actions": ["read", "create", "update"]}]},
        "team/private/**": {"policies": [{"users": ["alice"], "actions": ["read"]}]},
        "secret/**": {},
    },
    "adminPolicy": {"users": ["carol"], "actions": ["read", "create", "update", "delete"]},
    "metrics": {"users": ["prom"]},
}


def htpasswd_text(passwords: dict[str, str]) -> str:
    return "".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in passwords.items())


def auth_http(workdir: Path, access_control: dict[str, Any] | None = ACCESS_CONTROL,
              passwords: dict[str, str] | None = PASSWORDS, **http: Any) -> dict[str, Any]:
    """The `http` keys of a guarded config, with an htpasswd file of `passwords` in `workdir`."""
    extra: dict[str, Any] = {"realm": REALM, **http}
    if passwords is not None:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(htpasswd_text(passwords))
        extra["auth"] = {"htpasswd": {"path": str(htpasswd)}, "failDelay": FAIL_DELAY}
    if access_control is not None:
        extra["accessControl"] = access_control
    return extra


def auth_server(workdir: Path, access_control: dict[str, Any] | None = ACCESS_CONTROL,
                passwords: dict[str, str] | None = PASSWORDS, **http: Any) -> OcistoreServer:
    """A server (not started) with an htpasswd file of `passwords` beside its config."""
    return OcistoreServer(workdir, extra={"http": auth_http(workdir, access_control, passwords, **http)})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    server = auth_server(tmp_path_factory.mktemp("guarded")).start()
    try:
        yield server
    finally:
        server.stop()


class Clients:
    """One httpx client per user of PASSWORDS, and `anonymous`, all on one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._open: list[httpx.Client] = []
        self.anonymous = self._client(None)

    def _client(self, auth: tuple[str, str] | None) -> httpx.Client:
        client = httpx.Client(base_url=self.url, auth=auth, timeout=60.0)
        self._open.append(client)
        return client

    def __getattr__(self, user: str) -> httpx.Client:
        if user not in PASSWORDS:
            raise AttributeError(user)
        client = self._client((user, PASSWORDS[user]))
        setattr(self, user, client)
        return client

    def with_password(self, user: str, password: str) -> httpx.Client:
        return self._client((user, password))

    def close(self) -> None:
        for client in self._open:
            client.close()


@pytest.fixture
def clients(guarded: OcistoreServer) -> Iterator[Clients]:
    c = Clients(guarded.url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def tag() -> str:
    """A suffix that keeps this test's repositories apart from the other tests' on `guarded`."""
    return uuid.uuid4().hex[:10]
