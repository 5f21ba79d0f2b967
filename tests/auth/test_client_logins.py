"""`podman login` and oras-py's login against htpasswd users and policies: the clients an
operator's users log in with, beside skopeo (test_skopeo_auth.py)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import oras.provider
import pytest

from tests.auth.conftest import PASSWORDS
from tests.auth.test_bearer import podman, podman_store  # noqa: F401 - the fixture, reused
from tests.e2e.images import Image, build_umoci_image, skopeo
from tests.servers import OcistoreServer


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    layout = tmp_path_factory.mktemp("images") / "layout"
    return build_umoci_image(layout, "v1", [{"etc/greeting": b"hello through podman login\n"}])


def host(server: OcistoreServer) -> str:
    return server.url.removeprefix("http://")


def test_podman_logs_in_pushes_where_allowed_and_is_refused_elsewhere(
        guarded: OcistoreServer, image: Image, podman_store: Path, tag: str) -> None:  # noqa: F811
    source = f"{host(guarded)}/public/{tag}:v1"
    skopeo("copy", "--dest-tls-verify=false", f"--dest-creds=carol:{PASSWORDS['carol']}", image.ref,
           f"docker://{source}")
    auth = podman_store / "auth.json"
    wrong = podman(podman_store, "login", "--tls-verify=false", "--authfile", str(auth), "-u", "alice",
                   "-p", "not-her-password", host(guarded), check=False)
    assert wrong.returncode != 0 and "invalid username/password" in wrong.stderr, wrong.stderr
    podman(podman_store, "login", "--tls-verify=false", "--authfile", str(auth), "-u", "alice", "-p",
           PASSWORDS["alice"], host(guarded))
    podman(podman_store, "pull", "--tls-verify=false", "--authfile", str(auth), source)
    mine = f"{host(guarded)}/alice/{tag}:v1"
    podman(podman_store, "tag", source, mine)
    podman(podman_store, "push", "--tls-verify=false", "--authfile", str(auth), mine)
    theirs = f"{host(guarded)}/bob/{tag}:v1"
    podman(podman_store, "tag", source, theirs)
    refused = podman(podman_store, "push", "--tls-verify=false", "--authfile", str(auth), theirs, check=False)
    assert refused.returncode != 0 and "403 (forbidden)" in refused.stderr.lower(), refused.stderr


def test_oras_logs_in_and_pushes_and_pulls_an_artifact(guarded: OcistoreServer, tmp_path: Path, tag: str) -> None:
    payload = tmp_path / "notes.txt"
    payload.write_bytes(os.urandom(2048))
    target = f"{host(guarded)}/alice/{tag}:artifact"
    # The Basic backend: oras-py's default reads a Basic challenge's realm as a token server's URL.
    logged_in = oras.provider.Registry(hostname=host(guarded), insecure=True, auth_backend="basic")
    logged_in.login(username="alice", password=PASSWORDS["alice"], tls_verify=False,
                    config_path=str(tmp_path / "docker-config.json"))
    logged_in.push(target=target, files=[str(payload)], disable_path_validation=True)
    assert httpx.get(f"{guarded.url}/v2/alice/{tag}/tags/list").status_code == 401  # not without the login
    out = tmp_path / "pulled"
    files = logged_in.pull(target=target, outdir=str(out))
    assert [Path(f).read_bytes() for f in files] == [payload.read_bytes()]
