"""`http.auth.bearer`: the distribution token protocol against a token server of the test's own
(tokens.py), by hand with httpx and through skopeo and podman."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.api.helpers import assert_error, digest_of, push_blob, push_random_image
from tests.auth.tokens import SERVICE, TokenIssuer
from tests.e2e.images import Image, build_umoci_image, skopeo, tag_digest
from tests.servers import OcistoreServer, env_without_proxy, require_tool

USERS = {
    "pusher": ("pusher-pw", {"apps/*": ["pull", "push"], "registry:catalog": ["*"]}),
    "reader": ("reader-pw", {"apps/*": ["pull"]}),
}


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    server = TokenIssuer(tmp_path_factory.mktemp("token-issuer"), USERS).start()
    try:
        yield server
    finally:
        server.stop()


def bearer_server(workdir: Path, issuer: TokenIssuer, cert: Path | None = None) -> OcistoreServer:
    bearer = {"realm": issuer.realm, "service": SERVICE, "cert": str(cert or issuer.cert_path)}
    return OcistoreServer(workdir, extra={"http": {"auth": {"bearer": bearer}}})


@pytest.fixture(scope="module")
def registry(issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcistoreServer]:
    server = bearer_server(tmp_path_factory.mktemp("bearer-registry"), issuer).start()
    try:
        yield server
    finally:
        server.stop()


def repo_access(name: str, *actions: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": list(actions)}


def client(server: OcistoreServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def challenge(issuer: TokenIssuer, scope: str, error: str | None = None) -> str:
    value = f'Bearer realm="{issuer.realm}",service="{SERVICE}",scope="{scope}"'
    return value + (f',error="{error}"' if error else "")


def assert_challenged(resp: httpx.Response, expected: str) -> None:
    assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"] == expected


def test_requests_without_a_token_are_sent_to_the_token_server(registry: OcistoreServer, issuer: TokenIssuer) -> None:
    with client(registry, None) as anonymous:
        assert_challenged(anonymous.get("/v2/"), challenge(issuer, ""))
        assert_challenged(anonymous.get("/v2/apps/a/tags/list"), challenge(issuer, "repository:apps/a:pull"))
        assert_challenged(anonymous.head(f"/v2/apps/a/blobs/sha256:{'0' * 64}"),
                          challenge(issuer, "repository:apps/a:pull"))
        assert_challenged(anonymous.post("/v2/apps/a/blobs/uploads/"), challenge(issuer, "repository:apps/a:push"))
        # zot's mapping: every method but GET and HEAD is a push, DELETE too.
        assert_challenged(anonymous.delete("/v2/apps/a/manifests/v1"), challenge(issuer, "repository:apps/a:push"))
        assert_challenged(anonymous.get("/v2/_catalog"), challenge(issuer, "registry:catalog:*"))
        assert_challenged(anonymous.get("/storage/usage"), challenge(issuer, "registry:catalog:*"))
        assert anonymous.get("/livez").status_code == 200
    # Basic credentials are no token: the same challenge, so a client goes to the token server.
    basic = httpx.get(f"{registry.url}/v2/", auth=("pusher", "pusher-pw"))
    assert_challenged(basic, challenge(issuer, ""))
    with client(registry, issuer.token("pusher", [])) as probe:
        assert probe.get("/v2/").json() == {}  # a valid token, no scope needed


def test_a_token_grants_exactly_its_access(registry: OcistoreServer, issuer: TokenIssuer) -> None:
    with client(registry, issuer.token("pusher", [repo_access("apps/one", "pull", "push")])) as pusher:
        image = push_random_image(pusher, "apps/one", "v1")
        assert pusher.get("/v2/apps/one/manifests/v1").content == image.manifest
        # Not the repository next door.
        assert_challenged(pusher.get("/v2/apps/two/tags/list"),
                          challenge(issuer, "repository:apps/two:pull", "insufficient_scope"))
    with client(registry, issuer.token("reader", [repo_access("apps/one", "pull")])) as reader:
        assert reader.get("/v2/apps/one/manifests/v1").content == image.manifest
        assert reader.get(f"/v2/apps/one/blobs/{digest_of(image.config)}").content == image.config
        assert_challenged(reader.post("/v2/apps/one/blobs/uploads/"),
                          challenge(issuer, "repository:apps/one:push", "insufficient_scope"))
        assert_challenged(reader.delete(f"/v2/apps/one/manifests/{image.digest}"),
                          challenge(issuer, "repository:apps/one:push", "insufficient_scope"))
    # zot's per-entry expiry: an entry past its own exp grants nothing, the rest still do.
    spent = dict(repo_access("apps/one", "pull", "push"), exp=1)
    with client(registry, issuer.token("pusher", [spent, repo_access("apps/one", "pull")])) as partly:
        assert partly.get("/v2/apps/one/tags/list").json()["tags"] == ["v1"]
        assert_error(partly.post("/v2/apps/one/blobs/uploads/"), 401, "UNAUTHORIZED")
    with client(registry, issuer.token("pusher", [repo_access("apps/one", "push")])) as deleter:
        assert deleter.delete(f"/v2/apps/one/manifests/{image.digest}").status_code == 202


def test_a_mount_needs_pull_on_its_source(registry: OcistoreServer, issuer: TokenIssuer) -> None:
    data = os.urandom(300)
    with client(registry, issuer.token("pusher", [repo_access("apps/src", "pull", "push")])) as owner:
        digest = push_blob(owner, "apps/src", data)
    with client(registry, issuer.token("pusher", [repo_access("apps/dst", "pull", "push")])) as other:
        assert_challenged(other.post(f"/v2/apps/dst/blobs/uploads/?mount={digest}&from=apps/src"),
                          challenge(issuer, "repository:apps/dst:push repository:apps/src:pull", "insufficient_scope"))
        # Without `from`, knowing the digest is not enough either: an upload session, no blob.
        blind = other.post(f"/v2/apps/dst/blobs/uploads/?mount={digest}")
        assert blind.status_code == 202 and "/blobs/uploads/" in blind.headers["Location"], blind.text
        assert_error(other.head(f"/v2/apps/dst/blobs/{digest}"), 404, None)
    both = [repo_access("apps/dst", "pull", "push"), repo_access("apps/src", "pull")]
    with client(registry, issuer.token("pusher", both)) as allowed:
        assert allowed.post(f"/v2/apps/dst/blobs/uploads/?mount={digest}&from=apps/src").status_code == 201
    pulls_src = [repo_access("apps/dst3", "pull", "push"), repo_access("apps/src", "pull")]
    with client(registry, issuer.token("pusher", pulls_src)) as finder:
        assert finder.post(f"/v2/apps/dst3/blobs/uploads/?mount={digest}").status_code == 201


def test_the_catalog_needs_the_registry_catalog_scope(registry: OcistoreServer, issuer: TokenIssuer) -> None:
    with client(registry, issuer.token("pusher", [repo_access("apps/cat", "push")])) as pusher:
        push_random_image(pusher, "apps/cat", "v1")
        assert_challenged(pusher.get("/v2/_catalog"), challenge(issuer, "registry:catalog:*", "insufficient_scope"))
    catalog = {"type": "registry", "name": "catalog", "actions": ["*"]}
    with client(registry, issuer.token("pusher", [catalog])) as lister:
        assert "apps/cat" in lister.get("/v2/_catalog").json()["repositories"]


def test_bad_tokens_are_refused_as_invalid(registry: OcistoreServer, issuer: TokenIssuer) -> None:
    access = [repo_access("apps/one", "pull")]
    other_key = ec.generate_private_key(ec.SECP256R1())
    secret = issuer.cert_path.read_bytes()  # the public certificate as an HMAC secret: the classic confusion
    bad = {
        "expired": issuer.token("reader", access, lifetime=-120),
        "another key": issuer.token("reader", access, key=other_key),
        "another service": issuer.token("reader", access, audience="someone-else"),
        "no audience": issuer.token("reader", access, audience=None),
        "no expiry": issuer.token("reader", access, exp=None),
        "HMAC": hmac_token(secret, {"sub": "reader", "aud": SERVICE, "exp": int(time.time()) + 300,
                                    "access": access}),
        "not a JWT": "abc.def.ghi",
    }
    for why, token in bad.items():
        with client(registry, token) as holder:
            resp = holder.get("/v2/apps/one/tags/list")
        assert resp.status_code == 401, why
        assert resp.headers["WWW-Authenticate"] == challenge(issuer, "repository:apps/one:pull", "invalid_token"), why
    assert "the token was refused" in registry.log()


def hmac_token(secret: bytes, claims: dict[str, Any]) -> str:
    """HS256 by hand (PyJWT refuses to sign with a PEM key, rightly)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{part(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{part(json.dumps(claims).encode())}"
    return f"{signing}.{part(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


def test_a_pem_public_key_serves_as_cert(issuer: TokenIssuer, tmp_path: Path) -> None:
    """zot's `cert` may hold a bare public key (zot issue 3173); RS256 here."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "token-key.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = bearer_server(workdir, issuer, cert=public).start()
    try:
        good = issuer.token("pusher", [repo_access("apps/rsa", "pull", "push")], key=key, algorithm="RS256")
        with client(server, good) as pusher:
            push_random_image(pusher, "apps/rsa", "v1")
        with client(server, issuer.token("pusher", [repo_access("apps/rsa", "pull")])) as wrong_key:
            assert_error(wrong_key.get("/v2/apps/rsa/tags/list"), 401, "UNAUTHORIZED")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build_umoci_image(tmp_path_factory.mktemp("bearer-image") / "layout", "v1",
                             [{"etc/greeting": b"hello through a token\n"}])


def host(server: OcistoreServer) -> str:
    return server.url.removeprefix("http://")


def test_skopeo_gets_tokens_from_the_realm_to_push_and_pull(registry: OcistoreServer, issuer: TokenIssuer,
                                                            image: Image, tmp_path: Path) -> None:
    ref = f"docker://{host(registry)}/apps/skopeo:v1"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds=pusher:pusher-pw", "--preserve-digests", image.ref, ref)
    assert any(user == "pusher" and "repository:apps/skopeo:pull,push" in scopes for user, scopes in issuer.requests)
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--src-creds=reader:reader-pw", "--preserve-digests", ref,
           f"oci:{out}:v1")
    assert tag_digest(out, "v1") == image.digest
    refused = skopeo("copy", "--dest-tls-verify=false", "--dest-creds=reader:reader-pw", image.ref,
                     f"docker://{host(registry)}/apps/skopeo-denied:v1", check=False)
    assert refused.returncode != 0 and ("401" in refused.stderr or "unauthorized" in refused.stderr.lower()), \
        refused.stderr
    wrong = skopeo("inspect", "--tls-verify=false", "--creds=reader:nope", ref, check=False)
    assert wrong.returncode != 0  # the token server refuses the password, so no token


@pytest.fixture
def podman_store() -> Iterator[Path]:
    """podman's store of the test's own; short, since podman refuses a runroot of 50 characters."""
    store = Path(tempfile.mkdtemp(prefix="ocistore-podman-", dir="/tmp"))
    try:
        yield store
    finally:
        shutil.rmtree(store, ignore_errors=True)


def podman(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman with a store of the test's own (vfs: no overlay mounts needed)."""
    command = [require_tool("podman"), "--root", str(root / "root"), "--runroot", str(root / "run"),
               "--storage-driver", "vfs", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env_without_proxy())
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done


def test_podman_pulls_and_pushes_through_the_token_server(registry: OcistoreServer, issuer: TokenIssuer,
                                                          image: Image, podman_store: Path) -> None:
    source = f"{host(registry)}/apps/podman-src:v1"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds=pusher:pusher-pw", image.ref, f"docker://{source}")
    podman(podman_store, "pull", "--tls-verify=false", "--creds=reader:reader-pw", source)
    target = f"{host(registry)}/apps/podman:v1"
    podman(podman_store, "tag", source, target)
    refused = podman(podman_store, "push", "--tls-verify=false", "--creds=reader:reader-pw", target, check=False)
    assert refused.returncode != 0 and ("401" in refused.stderr or "unauthorized" in refused.stderr.lower()), \
        refused.stderr
    podman(podman_store, "push", "--tls-verify=false", "--creds=pusher:pusher-pw", target)
    with client(registry, issuer.token("reader", [repo_access("apps/podman", "pull")])) as reader:
        assert reader.get("/v2/apps/podman/tags/list").json()["tags"] == ["v1"]
