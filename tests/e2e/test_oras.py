"""oras-py (the ORAS Python SDK) against ocistore: OCI artifacts that are not container images.

Files pushed as an artifact come back identical, through monolithic and chunked uploads alike;
an artifact that names a `subject` (a signature, an SBOM) is found through the OCI 1.1
referrers API with its artifact type, as `oras discover` and cosign look for them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import oras.oci
import oras.provider
import pytest

from tests.e2e.images import OCI_INDEX, OCI_MANIFEST, sha256

MiB = 1024 * 1024
SIGNATURE_TYPE = "application/vnd.example.e2e.signature.v1+json"
SBOM_TYPE = "application/vnd.example.e2e.sbom.v1+json"
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2}


@pytest.fixture
def oras_client(host: str) -> oras.provider.Registry:
    return oras.provider.Registry(hostname=host, insecure=True)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def push_files(oras_client: oras.provider.Registry, target: str, src: Path, chunked: bool = False) -> str:
    """Push the top-level entries of `src` (a directory entry becomes one tar+gzip layer)."""
    response = oras_client.push(
        target=target, files=[str(p) for p in sorted(src.iterdir())], disable_path_validation=True,
        do_chunked=chunked, chunk_size=MiB,
    )
    return str(response.headers["Docker-Content-Digest"])


@pytest.fixture
def subject(oras_client: oras.provider.Registry, client: httpx.Client, host: str, repo: str,
            tmp_path: Path) -> oras.oci.Subject:
    """An artifact for signatures and SBOMs to refer to, as a descriptor of its manifest."""
    src = tmp_path / "subject"
    write_tree(src, {"app.txt": b"the thing being signed\n"})
    digest = push_files(oras_client, f"{host}/{repo}:app", src)
    raw = client.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}).content
    assert sha256(raw) == digest
    return oras.oci.Subject(mediaType=OCI_MANIFEST, digest=digest, size=len(raw))


def referrers(client: httpx.Client, repo: str, digest: str, **params: str) -> httpx.Response:
    response = client.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(OCI_INDEX)
    assert response.json()["mediaType"] == OCI_INDEX
    return response


def push_signature(oras_client: oras.provider.Registry, host: str, repo: str, subject: oras.oci.Subject,
                   workdir: Path) -> httpx.Headers:
    """A signature-like artifact as oras pushes one: its type is its config's media type."""
    write_tree(workdir, {"sig/signature.json": b'{"signed": true}', "config.json": b'{"signer": "e2e"}'})
    response = oras_client.push(
        target=f"{host}/{repo}:signature", files=[str(workdir / "sig" / "signature.json")],
        manifest_config=f"{workdir / 'config.json'}:{SIGNATURE_TYPE}", subject=subject,
        disable_path_validation=True,
    )
    return httpx.Headers(dict(response.headers))


def put_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = sha256(data)
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
    done = client.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def push_sbom(client: httpx.Client, repo: str, subject: oras.oci.Subject) -> tuple[str, httpx.Response]:
    """An SBOM pushed untagged, by digest, with an explicit artifactType and an empty config."""
    document = b'{"spdxVersion": "SPDX-2.3", "name": "e2e"}'
    put_blob(client, repo, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": EMPTY_CONFIG,
        "layers": [{"mediaType": "application/spdx+json", "digest": put_blob(client, repo, document),
                    "size": len(document)}],
        "subject": {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size},
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    raw = json.dumps(manifest).encode()
    digest = sha256(raw)
    response = client.put(f"/v2/{repo}/manifests/{digest}", content=raw, headers={"Content-Type": OCI_MANIFEST})
    assert response.status_code == 201, response.text
    return digest, response


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_push_then_pull_files(
    oras_client: oras.provider.Registry, host: str, repo: str, tmp_path: Path, chunked: bool
) -> None:
    """Files and a directory pushed with oras are pulled back identical, and the tag is listed."""
    files = {
        "notes.txt": b"an artifact that is not a container image\n",
        "model.bin": random.Random(7).randbytes(3 * MiB + 17),
        "config/settings.yaml": b"threshold: 0.5\n",
        "config/nested/labels.txt": b"cat\ndog\n",
    }
    write_tree(tmp_path / "src", files)
    push_files(oras_client, f"{host}/{repo}:files", tmp_path / "src", chunked=chunked)

    assert oras_client.get_tags(f"{host}/{repo}") == ["files"]
    out = tmp_path / "out"
    oras_client.pull(target=f"{host}/{repo}:files", outdir=str(out))
    assert read_tree(out) == files


def test_referrers_lists_signature_pushed_by_oras(
    oras_client: oras.provider.Registry, client: httpx.Client, host: str, repo: str,
    subject: oras.oci.Subject, tmp_path: Path,
) -> None:
    """A signature pushed with a subject is listed as a referrer, typed by its config media type."""
    headers = push_signature(oras_client, host, repo, subject, tmp_path / "signature")
    assert headers.get("OCI-Subject") == subject.digest
    signature = headers["Docker-Content-Digest"]
    raw = client.get(f"/v2/{repo}/manifests/{signature}", headers={"Accept": OCI_MANIFEST}).content

    [entry] = referrers(client, repo, subject.digest).json()["manifests"]
    assert entry["digest"] == signature
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["size"] == len(raw)
    assert entry["artifactType"] == SIGNATURE_TYPE


def test_referrers_filters_by_artifact_type(
    oras_client: oras.provider.Registry, client: httpx.Client, host: str, repo: str,
    subject: oras.oci.Subject, tmp_path: Path,
) -> None:
    """With a signature and an SBOM on one subject, ?artifactType= returns just the one asked for."""
    signature = push_signature(oras_client, host, repo, subject, tmp_path / "signature")["Docker-Content-Digest"]
    sbom, pushed = push_sbom(client, repo, subject)
    assert pushed.headers.get("OCI-Subject") == subject.digest

    listed = {m["digest"]: m for m in referrers(client, repo, subject.digest).json()["manifests"]}
    assert set(listed) == {signature, sbom}
    assert listed[sbom]["artifactType"] == SBOM_TYPE
    assert listed[sbom]["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}

    filtered = referrers(client, repo, subject.digest, artifactType=SBOM_TYPE)
    assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom]


def test_deleted_referrer_is_no_longer_listed(
    client: httpx.Client, repo: str, subject: oras.oci.Subject
) -> None:
    """Deleting an SBOM manifest removes it from its subject's referrers."""
    sbom, _ = push_sbom(client, repo, subject)
    assert [m["digest"] for m in referrers(client, repo, subject.digest).json()["manifests"]] == [sbom]

    assert client.delete(f"/v2/{repo}/manifests/{sbom}").status_code == 202
    assert referrers(client, repo, subject.digest).json()["manifests"] == []
