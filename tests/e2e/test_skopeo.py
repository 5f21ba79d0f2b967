"""skopeo (containers/image, the client of podman and buildah) against ocistore.

What a user pushes must come back byte for byte: the same manifest digest, the same blobs, the
same files once unpacked; and inspect, list-tags and delete must behave as on any registry.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.e2e.images import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    Image,
    blob,
    sha256,
    skopeo,
    tag_digest,
    unpacked_files,
)

INSECURE = "--tls-verify=false"


def push(image: Image, dest: str, *options: str) -> str:
    """Push `image` to `dest` with skopeo; returns the manifest digest skopeo says it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        digestfile = Path(tmp) / "digest"
        skopeo("copy", "--dest-tls-verify=false", "--digestfile", str(digestfile), *options, image.ref, dest)
        return digestfile.read_text().strip()


def pull(src: str, layout: Path, tag: str, *options: str) -> str:
    """Pull `src` into an OCI layout; returns the manifest digest that layout records."""
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", *options, src, f"oci:{layout}:{tag}")
    return tag_digest(layout, tag)


def inspect(ref: str, *options: str) -> dict[str, object]:
    return json.loads(skopeo(*options, "inspect", INSECURE, ref).stdout)  # type: ignore[no-any-return]


def raw_manifest(ref: str) -> bytes:
    return skopeo("inspect", INSECURE, "--raw", ref).stdout.encode()


def list_tags(ref: str) -> list[str]:
    return sorted(json.loads(skopeo("list-tags", INSECURE, ref).stdout)["Tags"])


def test_push_then_pull_gives_back_the_same_image(host: str, repo: str, skopeo_image: Image, tmp_path: Path) -> None:
    """A round trip through the registry keeps the manifest digest, every blob and every file."""
    ref = f"docker://{host}/{repo}:v1"
    assert push(skopeo_image, ref, "--preserve-digests") == skopeo_image.digest

    out = tmp_path / "pulled"
    pulled = Image(out, "v1", pull(ref, out, "v1"), skopeo_image.files)
    assert pulled.digest == skopeo_image.digest
    assert pulled.manifest_bytes() == skopeo_image.manifest_bytes()
    config = skopeo_image.manifest()["config"]
    assert isinstance(config, dict)
    for digest in [config["digest"], *skopeo_image.layer_digests()]:
        assert blob(out, digest) == blob(skopeo_image.layout, digest)
    assert unpacked_files(pulled, tmp_path) == skopeo_image.files


def test_inspect_shows_digest_layers_platform_and_tags(host: str, repo: str, skopeo_image: Image) -> None:
    """`skopeo inspect` reads the manifest, the config and the tag list as the user pushed them."""
    ref = f"docker://{host}/{repo}:v1"
    push(skopeo_image, ref, "--preserve-digests")

    info = inspect(ref)
    assert info["Digest"] == skopeo_image.digest
    assert info["Layers"] == skopeo_image.layer_digests()
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["RepoTags"] == ["v1"]

    assert sha256(raw_manifest(ref)) == skopeo_image.digest
    config = skopeo_image.manifest()["config"]
    assert isinstance(config, dict)
    raw_config = skopeo("inspect", INSECURE, "--config", "--raw", ref).stdout.encode()
    assert raw_config == blob(skopeo_image.layout, config["digest"])


def test_list_tags_shows_every_tag_pushed(host: str, repo: str, skopeo_image: Image, second_image: Image) -> None:
    """Two images and a second tag on one of them: list-tags shows all three tags, no more."""
    push(skopeo_image, f"docker://{host}/{repo}:v1")
    push(skopeo_image, f"docker://{host}/{repo}:stable")
    push(second_image, f"docker://{host}/{repo}:v2")

    assert list_tags(f"docker://{host}/{repo}") == ["stable", "v1", "v2"]
    assert inspect(f"docker://{host}/{repo}:stable")["Digest"] == skopeo_image.digest


def test_delete_removes_the_image_and_only_it(
    host: str, repo: str, skopeo_image: Image, second_image: Image, tmp_path: Path
) -> None:
    """After `skopeo delete` the image is gone, while another image of the repository still pulls."""
    push(skopeo_image, f"docker://{host}/{repo}:v1")
    push(second_image, f"docker://{host}/{repo}:v2")

    skopeo("delete", INSECURE, f"docker://{host}/{repo}:v1")

    gone = skopeo("inspect", INSECURE, f"docker://{host}/{repo}:v1", check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower()
    assert list_tags(f"docker://{host}/{repo}") == ["v2"]
    out = tmp_path / "pulled"
    kept = Image(out, "v2", pull(f"docker://{host}/{repo}:v2", out, "v2"), second_image.files)
    assert kept.digest == second_image.digest
    assert unpacked_files(kept, tmp_path) == second_image.files


def test_multi_arch_index_round_trip(host: str, repo: str, multiarch_image: Image, tmp_path: Path) -> None:
    """`skopeo copy --all` of an image index keeps the index digest and each platform's image."""
    ref = f"docker://{host}/{repo}:multi"
    assert push(multiarch_image, ref, "--all", "--preserve-digests") == multiarch_image.digest

    raw = raw_manifest(ref)
    assert sha256(raw) == multiarch_image.digest
    assert json.loads(raw)["mediaType"] == OCI_INDEX
    for arch, digest in multiarch_image.platforms.items():
        info = inspect(ref, "--override-arch", arch, "--override-os", "linux")
        platform_image = Image(multiarch_image.layout, arch, digest)
        assert (info["Architecture"], info["Layers"]) == (arch, platform_image.layer_digests())

    out = tmp_path / "pulled"
    assert pull(ref, out, "multi", "--all") == multiarch_image.digest
    for digest in multiarch_image.platforms.values():
        assert blob(out, digest) == blob(multiarch_image.layout, digest)


def test_docker_schema2_push_and_pull(host: str, repo: str, skopeo_image: Image, tmp_path: Path) -> None:
    """An image converted to Docker schema 2 on push is stored and served as that exact manifest."""
    ref = f"docker://{host}/{repo}:v2s2"
    digest = push(skopeo_image, ref, "--format", "v2s2")

    raw = raw_manifest(ref)
    assert sha256(raw) == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert [layer["digest"] for layer in manifest["layers"]] == skopeo_image.layer_digests()
    assert inspect(ref)["Digest"] == digest

    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", ref, f"dir:{out}")
    assert sha256((out / "manifest.json").read_bytes()) == digest
    for layer in skopeo_image.layer_digests():
        assert (out / layer.removeprefix("sha256:")).read_bytes() == blob(skopeo_image.layout, layer)


def test_copy_between_repositories(host: str, repo: str, skopeo_image: Image, tmp_path: Path) -> None:
    """Registry-to-registry copy inside ocistore (where skopeo mounts blobs across repositories)."""
    push(skopeo_image, f"docker://{host}/{repo}/a:v1")
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
           f"docker://{host}/{repo}/a:v1", f"docker://{host}/{repo}/b:v1")

    out = tmp_path / "pulled"
    copied = Image(out, "v1", pull(f"docker://{host}/{repo}/b:v1", out, "v1"), skopeo_image.files)
    assert copied.digest == skopeo_image.digest
    assert unpacked_files(copied, tmp_path) == skopeo_image.files
