"""skopeo (containers/image, the client of podman and buildah) over TLS: the registry's CA and
a client certificate given the containers way, in a certificate directory (`*.crt` CAs,
`*.cert` + `*.key` a client pair); nothing insecure is allowed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.images import Image, build_umoci_image, copy_to_layout, skopeo, tag_digest
from tests.tls.conftest import PKI, TLSServers


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A two-layer image built by umoci, copied by skopeo into a layout of its own."""
    workdir = tmp_path_factory.mktemp("tls-images")
    built = build_umoci_image(workdir / "umoci", "v1", [{"etc/greeting": b"hello over TLS\n"},
                                                         {"usr/share/tls/data.bin": bytes(range(256)) * 512}])
    return copy_to_layout(built, workdir / "skopeo", "v1")


def cert_dir(pki: PKI, directory: Path, client: str | None) -> Path:
    directory.mkdir(parents=True)
    shutil.copy(pki.ca_path, directory / "ca.crt")
    if client is not None:
        cert, key = pki.client(client)
        shutil.copy(cert, directory / f"{client}.cert")
        shutil.copy(key, directory / f"{client}.key")
    return directory


def test_skopeo_copies_an_image_in_and_out_over_tls(tls_server: TLSServers, pki: PKI, image: Image,
                                                    tmp_path: Path) -> None:
    server = tls_server()
    certs = str(cert_dir(pki, tmp_path / "certs", None))
    ref = f"docker://127.0.0.1:{server.port}/tls/skopeo:v1"
    with tempfile.TemporaryDirectory() as tmp:
        digestfile = Path(tmp) / "digest"
        skopeo("copy", "--dest-cert-dir", certs, "--preserve-digests", "--digestfile", str(digestfile),
               image.ref, ref)
        assert digestfile.read_text().strip() == image.digest
    out = tmp_path / "pulled"
    skopeo("copy", "--src-cert-dir", certs, "--preserve-digests", ref, f"oci:{out}:v1")
    assert tag_digest(out, "v1") == image.digest
    # Without the CA, skopeo does not trust the registry.
    refused = skopeo("inspect", "--raw", ref, check=False)
    assert refused.returncode != 0 and "certificate" in refused.stderr


def test_skopeo_with_a_client_certificate_against_mutual_tls(tls_server: TLSServers, pki: PKI, image: Image,
                                                             tmp_path: Path) -> None:
    server = tls_server(cacert=True)
    ref = f"docker://127.0.0.1:{server.port}/mtls/skopeo:v1"
    with_client = str(cert_dir(pki, tmp_path / "client", "builder"))
    skopeo("copy", "--dest-cert-dir", with_client, "--preserve-digests", image.ref, ref)
    out = tmp_path / "pulled"
    skopeo("copy", "--src-cert-dir", with_client, "--preserve-digests", ref, f"oci:{out}:v1")
    assert tag_digest(out, "v1") == image.digest
    # The CA alone is not enough: without access control, nobody is anonymous, so the registry
    # wants to know who it is talking to (401, a challenge skopeo has no credentials for).
    anonymous = skopeo("inspect", "--raw", "--cert-dir", str(cert_dir(pki, tmp_path / "ca-only", None)), ref,
                       check=False)
    assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower(), anonymous.stderr
