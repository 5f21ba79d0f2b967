"""A verified client certificate as an identity for zot's access-control policies (`http.tls.cacert`,
`http.auth.mtls`), beside Basic logins: zot's order, credentials first, then the certificate,
then anonymous."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error, push_random_image
from tests.auth.conftest import REALM, htpasswd_text
from tests.certs import client_context
from tests.servers import OcistoreServer
from tests.tls.conftest import PKI, TLSServers, make_pki

ACCESS: dict[str, Any] = {
    "groups": {"ci": {"users": ["builder"]}},
    "repositories": {
        "mtls/**": {"policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]},
                                 {"groups": ["ci"], "actions": ["read", "create"]}]},
        "public/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
    },
}


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path)


@pytest.fixture
def servers(tmp_path: Path, pki: PKI) -> Iterator[TLSServers]:
    made = TLSServers(tmp_path, pki)
    try:
        yield made
    finally:
        for server in made.servers:
            server.stop()


def serve(servers: TLSServers, tmp_path: Path, **auth: Any) -> OcistoreServer:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_text({"bob": "bob-pw"}))
    return servers(cacert=True, realm=REALM, accessControl=ACCESS,
                   auth={"htpasswd": {"path": str(htpasswd)}, "failDelay": 0, **auth})


def as_cert(server: OcistoreServer, pki: PKI, name: str | None, auth: tuple[str, str] | None = None,
            **names: Any) -> httpx.Client:
    cert, key = pki.ca.issue(name, client=True, **names).write(pki.directory, f"client-{name}-{len(names)}") \
        if name is not None or names else (None, None)
    return httpx.Client(base_url=server.url, verify=client_context(pki.ca_path, cert, key), auth=auth, timeout=60)


def test_a_certificate_names_a_user_for_the_policies(servers: TLSServers, pki: PKI, tmp_path: Path) -> None:
    server = serve(servers, tmp_path)
    with as_cert(server, pki, "alice") as alice, as_cert(server, pki, "builder") as builder, \
            as_cert(server, pki, "mallory") as mallory, as_cert(server, pki, None) as nobody:
        image = push_random_image(alice, "mtls/app", "v1")
        push_random_image(builder, "mtls/ci", "v1")  # CN builder is in accessControl.groups.ci
        assert_error(builder.delete(f"/v2/mtls/app/manifests/{image.digest}"), 403, "DENIED")
        assert_error(mallory.get("/v2/mtls/app/tags/list"), 403, "DENIED")  # a user, just not allowed
        # No certificate, no credentials: anonymous, which may read public/** and nothing else.
        assert_error(nobody.get("/v2/mtls/app/tags/list"), 401, "UNAUTHORIZED")
        assert nobody.get("/v2/public/none/tags/list").status_code == 404
        assert nobody.get("/v2/").status_code == 401  # anonymous beside logins: the probe challenges


def test_credentials_come_before_the_certificate_and_a_wrong_password_is_never_the_certificate(
        servers: TLSServers, pki: PKI, tmp_path: Path) -> None:
    server = serve(servers, tmp_path)
    with as_cert(server, pki, "alice", auth=("bob", "bob-pw")) as bob_with_alices_cert:
        assert_error(bob_with_alices_cert.post("/v2/mtls/app/blobs/uploads/"), 403, "DENIED")  # bob decides
    with as_cert(server, pki, "alice", auth=("bob", "wrong")) as wrong:
        resp = wrong.get("/v2/mtls/app/tags/list")
        assert_error(resp, 401, "UNAUTHORIZED")
        assert resp.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        assert_error(wrong.get("/v2/public/x/tags/list"), 401, "UNAUTHORIZED")  # nor anonymous
    with as_cert(server, pki, None, auth=("bob", "bob-pw")) as bob:
        assert bob.get("/v2/public/x/tags/list").status_code == 404  # defaultPolicy: read


def test_identity_attributes_choose_what_names_the_client(servers: TLSServers, pki: PKI, tmp_path: Path) -> None:
    server = serve(servers, tmp_path, mtls={"identityAttributes": ["URI"],
                                            "uriSanPattern": "spiffe://example.org/workload/(.*)"})
    with as_cert(server, pki, "not-alice", uris=("spiffe://example.org/workload/alice",)) as workload:
        push_random_image(workload, "mtls/spiffe", "v1")  # named alice by its URI, not its CN
    with as_cert(server, pki, "alice") as no_uri:
        # A certificate with none of the attributes names nobody: a failed login, not anonymous.
        assert_error(no_uri.get("/v2/public/x/tags/list"), 401, "UNAUTHORIZED")
    assert "the client certificate has none of URI" in server.log()
