"""skopeo (containers/image) through logins and policies: it sends the credentials it holds only
after `GET /v2/` challenged it, so this is also the Docker quirk seen from a real client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.auth.conftest import PASSWORDS
from tests.e2e.images import Image, build_umoci_image, skopeo, tag_digest
from tests.servers import OcistoreServer

TLS = "--tls-verify=false"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    layout = tmp_path_factory.mktemp("images") / "layout"
    return build_umoci_image(layout, "v1", [{"etc/greeting": b"hello through a login\n"}])


def creds(user: str, password: str | None = None, flag: str = "--creds") -> str:
    return f"{flag}={user}:{password if password is not None else PASSWORDS[user]}"


def host(server: OcistoreServer) -> str:
    return server.url.removeprefix("http://")


def test_skopeo_pushes_and_pulls_with_creds(guarded: OcistoreServer, image: Image, tmp_path: Path, tag: str) -> None:
    ref = f"docker://{host(guarded)}/alice/{tag}:v1"
    skopeo("copy", "--dest-tls-verify=false", creds("alice", flag="--dest-creds"), "--preserve-digests",
           image.ref, ref)
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", creds("alice", flag="--src-creds"), "--preserve-digests",
           ref, f"oci:{out}:v1")
    assert tag_digest(out, "v1") == image.digest
    denied = skopeo("inspect", TLS, creds("bob"), ref, check=False)
    assert denied.returncode != 0 and "denied" in denied.stderr.lower(), denied.stderr


def test_skopeo_with_a_wrong_password_is_refused(guarded: OcistoreServer, image: Image, tag: str) -> None:
    ref = f"docker://{host(guarded)}/alice/{tag}:v1"
    pushed = skopeo("copy", "--dest-tls-verify=false", "--dest-creds=alice:wrong", image.ref, ref, check=False)
    assert pushed.returncode != 0
    assert "401" in pushed.stderr or "unauthorized" in pushed.stderr.lower(), pushed.stderr
    pulled = skopeo("inspect", TLS, creds("alice", "wrong"), f"docker://{host(guarded)}/public/{tag}:v1",
                    check=False)
    assert pulled.returncode != 0 and ("401" in pulled.stderr or "unauthorized" in pulled.stderr.lower())


def test_skopeo_pulls_anonymously_where_anonymous_may_read(
        guarded: OcistoreServer, image: Image, tmp_path: Path, tag: str) -> None:
    ref = f"docker://{host(guarded)}/public/{tag}:v1"
    skopeo("copy", "--dest-tls-verify=false", creds("carol", flag="--dest-creds"), "--preserve-digests",
           image.ref, ref)
    out = tmp_path / "anonymous"
    skopeo("copy", "--src-tls-verify=false", "--src-no-creds", "--preserve-digests", ref, f"oci:{out}:v1")
    assert tag_digest(out, "v1") == image.digest
    refused = skopeo("inspect", TLS, "--no-creds", f"docker://{host(guarded)}/alice/{tag}:v1", check=False)
    assert refused.returncode != 0
