"""Fixtures for the end-to-end suite: real clients (skopeo, umoci, oras) against a real `ocistore serve`.

Source images are built once per session, offline.  A failing test gets the tail of every server
log it used attached to its report, since a client's error alone rarely says what the server did.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEPLOYMENT_MODES, Deployment, deployed
from tests.e2e.images import Image, add_index, build_umoci_image, copy_to_layout
from tests.servers import OcistoreServer


class ServerPool:
    """Servers a test starts itself (e.g. after laying out a repository under their root)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[OcistoreServer] = []

    def new(self) -> OcistoreServer:
        """A server not started yet, so its root can be filled first."""
        workdir = self.workdir / f"server-{len(self.servers)}"
        workdir.mkdir()
        server = OcistoreServer(workdir)
        self.servers.append(server)
        return server

    def close(self) -> None:
        """Stop every server and drop its data: the streaming tests leave gigabytes there."""
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path)
    try:
        yield pool
    finally:
        pool.close()


# The real clients here speak to each deployment without logging in; with logins on, skopeo,
# podman and oras are driven through tests/auth (test_skopeo_auth.py, test_client_logins.py).
@pytest.fixture(scope="session", params=[m for m in DEPLOYMENT_MODES if m != "htpasswd"])
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request, tmp_path_factory)


@pytest.fixture
def host(registry: OcistoreServer) -> str:
    """The registry as image references name it: 127.0.0.1:PORT."""
    return registry.url.removeprefix("http://")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def umoci_image(image_dir: Path) -> Image:
    """A two-layer image in a layout written by umoci, tagged v1 and nothing else."""
    return build_umoci_image(image_dir / "umoci", "v1", [
        {"etc/greeting": b"hello from ocistore e2e\n"},
        {"usr/share/e2e/data.bin": bytes(range(256)) * 4096},
    ])


@pytest.fixture(scope="session")
def skopeo_layout(image_dir: Path) -> Path:
    return image_dir / "skopeo"


@pytest.fixture(scope="session")
def skopeo_image(umoci_image: Image, skopeo_layout: Path) -> Image:
    """The umoci image as skopeo copies it into a layout of its own, tagged v1."""
    return copy_to_layout(umoci_image, skopeo_layout, "v1")


@pytest.fixture(scope="session")
def second_image(image_dir: Path, skopeo_layout: Path) -> Image:
    """Another image with other content, tagged v2 in the skopeo layout."""
    built = build_umoci_image(image_dir / "umoci-v2", "v2", [{"etc/greeting": b"second image\n"}])
    return copy_to_layout(built, skopeo_layout, "v2")


@pytest.fixture(scope="session")
def multiarch_image(image_dir: Path, skopeo_layout: Path) -> Image:
    """An amd64 + arm64 image index, tagged multi in the skopeo layout."""
    layout = image_dir / "umoci-multi"
    per_arch = [build_umoci_image(layout, arch, [{"etc/arch": arch.encode()}], arch) for arch in ("amd64", "arm64")]
    return copy_to_layout(add_index(layout, "multi", per_arch), skopeo_layout, "multi")


