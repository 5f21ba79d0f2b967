"""Source images made offline by the real tools (umoci builds, skopeo copies), and the CLI runner.

No network and no base image: umoci starts from an empty image and repacks file layers onto it,
so the e2e suite needs only the apt packages, never a public registry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import env_without_proxy, require_tool

REF_NAME = "org.opencontainers.image.ref.name"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Image:
    """A tagged image (or index) in a local OCI layout, with what a user expects to find in it."""

    layout: Path
    tag: str
    digest: str
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    platforms: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    def manifest_bytes(self) -> bytes:
        return blob(self.layout, self.digest)

    def manifest(self) -> dict[str, object]:
        return json.loads(self.manifest_bytes())  # type: ignore[no-any-return]

    def layer_digests(self) -> list[str]:
        layers = self.manifest()["layers"]
        assert isinstance(layers, list)
        return [layer["digest"] for layer in layers]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a client; when it fails, its stderr (what the registry answered) is the assertion message."""
    proc = subprocess.run(list(args), capture_output=True, text=True, env=env_without_proxy(), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stderr}")
    return proc


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """skopeo with no signature policy: these tests are about the registry, not about image trust."""
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def umoci(*args: str) -> None:
    run(require_tool("umoci"), *args)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(layout: Path, digest: str) -> bytes:
    algorithm, hex_ = digest.split(":", 1)
    return (layout / "blobs" / algorithm / hex_).read_bytes()


def tag_digest(layout: Path, tag: str) -> str:
    """The digest index.json names for `tag`: how an OCI layout records what a tag points at."""
    index = json.loads((layout / "index.json").read_text())
    found = [m["digest"] for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    assert len(found) == 1, f"{layout}/index.json has {len(found)} entries tagged {tag!r}"
    return str(found[0])


def layout_tags(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    return sorted(m["annotations"][REF_NAME] for m in index["manifests"] if REF_NAME in m.get("annotations", {}))


def build_umoci_image(layout: Path, tag: str, layers: list[dict[str, bytes]], arch: str = "amd64") -> Image:
    """An image of one file layer per entry of `layers`, tagged `tag` in `layout`, made by umoci alone."""
    if not layout.exists():
        umoci("init", "--layout", str(layout))
    ref = f"{layout}:{tag}"
    umoci("new", "--image", ref)
    bundle = layout.parent / f"bundle-{layout.name}-{tag}"
    files: dict[str, bytes] = {}
    for layer in layers:
        umoci("unpack", "--image", ref, str(bundle))
        for name, data in layer.items():
            path = bundle / "rootfs" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        umoci("repack", "--image", ref, str(bundle))
        shutil.rmtree(bundle)
        files.update(layer)
    umoci("config", "--image", ref, "--architecture", arch, "--os", "linux", "--config.cmd", "/bin/true")
    umoci("gc", "--layout", str(layout))
    return Image(layout, tag, tag_digest(layout, tag), files)


def add_index(layout: Path, tag: str, images: list[Image]) -> Image:
    """Tie images of one layout into a multi-platform index tagged `tag`, as a multi-arch build does."""
    manifests = []
    platforms = {}
    for image in images:
        raw = image.manifest_bytes()
        config_digest = json.loads(raw)["config"]["digest"]
        config = json.loads(blob(layout, config_digest))
        platform = {"architecture": config["architecture"], "os": config["os"]}
        manifests.append({"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(raw),
                          "platform": platform})
        platforms[config["architecture"]] = image.digest
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    digest = sha256(data)
    (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"].append({"mediaType": OCI_INDEX, "digest": digest, "size": len(data),
                               "annotations": {REF_NAME: tag}})
    index_path.write_text(json.dumps(index))
    return Image(layout, tag, digest, platforms=platforms)


def copy_to_layout(image: Image, layout: Path, tag: str) -> Image:
    """skopeo's own copy of `image` into `layout`: a layout written the way users' tools write them."""
    skopeo("copy", "--all", "--preserve-digests", image.ref, f"oci:{layout}:{tag}")
    copied = Image(layout, tag, tag_digest(layout, tag), image.files, image.platforms)
    assert copied.digest == image.digest
    return copied


def unpacked_files(image: Image, workdir: Path) -> dict[str, bytes]:
    """The files of `image`'s root filesystem as umoci unpacks them: what a container would see."""
    bundle = workdir / f"unpacked-{image.tag}"
    umoci("unpack", "--image", f"{image.layout}:{image.tag}", str(bundle))
    return {name: (bundle / "rootfs" / name).read_bytes() for name in image.files}
