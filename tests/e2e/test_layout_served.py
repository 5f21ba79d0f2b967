"""ocistore's premise: a repository is a plain OCI image layout, in both directions.

A layout that skopeo or umoci wrote under the root directory before the server started is served
as is, with no import step; and what is pushed lands as a layout the same tools read directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e.conftest import ServerPool
from tests.e2e.images import Image, layout_tags, skopeo, tag_digest, unpacked_files
from tests.servers import OcistoreServer


def served_tags(host: str, name: str) -> list[str]:
    return sorted(json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host}/{name}").stdout)["Tags"])


def pull_and_check(server: OcistoreServer, name: str, source: Image, tmp_path: Path) -> None:
    """Pull `name`:tag with skopeo and find the source image again: same digest, same files."""
    host = server.url.removeprefix("http://")
    assert served_tags(host, name) == [source.tag]
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests",
           f"docker://{host}/{name}:{source.tag}", f"oci:{out}:{source.tag}")
    pulled = Image(out, source.tag, tag_digest(out, source.tag), source.files)
    assert pulled.digest == source.digest
    assert pulled.manifest_bytes() == source.manifest_bytes()
    assert unpacked_files(pulled, tmp_path) == source.files


def test_layout_written_by_skopeo_is_served(servers: ServerPool, umoci_image: Image, tmp_path: Path) -> None:
    """`skopeo copy ... oci:<root>/<repo>:v1` before start is enough to publish an image."""
    server = servers.new()
    name = "library/from-skopeo"
    (server.root / name).parent.mkdir(parents=True)
    skopeo("copy", "--preserve-digests", umoci_image.ref, f"oci:{server.root / name}:{umoci_image.tag}")
    server.start()

    pull_and_check(server, name, umoci_image, tmp_path)


def test_layout_written_by_umoci_is_served(servers: ServerPool, umoci_image: Image, tmp_path: Path) -> None:
    """A layout built by umoci (an index.json without mediaType, 0600 blobs) is served unchanged."""
    server = servers.new()
    name = "tools/from-umoci"
    shutil.copytree(umoci_image.layout, server.root / name)
    server.start()

    pull_and_check(server, name, umoci_image, tmp_path)


def test_pushed_repository_is_a_layout_tools_read(
    servers: ServerPool, repo: str, skopeo_image: Image, tmp_path: Path
) -> None:
    """After a push, <root>/<repo> on local disk is an OCI layout: skopeo and umoci read it without the server."""
    server = servers.new().start()
    host = server.url.removeprefix("http://")
    skopeo("copy", "--dest-tls-verify=false", "--preserve-digests", skopeo_image.ref, f"docker://{host}/{repo}:v1")

    stored = server.repo_path(repo)
    assert layout_tags(stored) == ["v1"]
    assert tag_digest(stored, "v1") == skopeo_image.digest
    info = json.loads(skopeo("inspect", f"oci:{stored}:v1").stdout)
    assert info["Digest"] == skopeo_image.digest

    copy = tmp_path / "copy"
    shutil.copytree(stored, copy)
    assert unpacked_files(Image(copy, "v1", skopeo_image.digest, skopeo_image.files), tmp_path) == skopeo_image.files
