"""`http.tls`: the registry over HTTPS, TLS 1.2 or later only, its certificate renewed in place."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import warnings
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import digest_of, push_random_image
from tests.certs import Issued, client_context, served_serial
from tests.servers import wait_until
from tests.tls.conftest import PKI, TLSServers


def test_push_and_pull_over_https_verified_against_the_ca(tls_server: TLSServers, pki: PKI) -> None:
    server = tls_server()
    assert server.url.startswith("https://")
    with httpx.Client(base_url=server.url, verify=client_context(pki.ca_path), timeout=30) as client:
        image = push_random_image(client, "tls/app", "v1")
        got = client.get("/v2/tls/app/manifests/v1", headers={"Accept": image.media_type})
        assert got.status_code == 200 and got.content == image.manifest
        layer = client.get(f"/v2/tls/app/blobs/{digest_of(image.layers[0])}")
        assert layer.status_code == 200 and layer.content == image.layers[0]
    assert served_serial("127.0.0.1", server.port, pki.ca_path) == pki.serial
    # Plain HTTP on the TLS port gets no registry answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/v2/", timeout=5).raise_for_status()


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        return str(conn.version())


def _legacy_client(pki: PKI, highest: ssl.TLSVersion) -> ssl.SSLContext:
    """A client willing to speak old protocols (OpenSSL's own floor lowered), up to `highest`."""
    ctx = client_context(pki.ca_path)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # deprecated is the point: such a client must be refused
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = highest
    return ctx


def test_a_tls_1_1_client_is_refused_and_tls_1_2_is_served(tls_server: TLSServers, pki: PKI) -> None:
    server = tls_server()
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(server.port, _legacy_client(pki, ssl.TLSVersion.TLSv1_1))
    # The server's refusal: a protocol_version alert, or its closing the connection (uvloop
    # may close before the alert is out). The same client capped at TLS 1.2 is served below,
    # so its own policy allowed the attempt.
    assert isinstance(refused.value, ssl.SSLEOFError) or refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", \
        refused.value
    assert _handshake(server.port, _legacy_client(pki, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert _handshake(server.port, client_context(pki.ca_path)) == "TLSv1.3"


def _replace(path: Path, data: bytes) -> None:
    """Write as a renewal tool does: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _renew(pki: PKI) -> Issued:
    renewed = pki.ca.issue("localhost")
    assert renewed.serial != pki.serial
    return renewed


def test_a_renewed_certificate_reaches_new_connections_without_a_restart(tls_server: TLSServers, pki: PKI) -> None:
    server = tls_server()
    verify = client_context(pki.ca_path)
    with httpx.Client(base_url=server.url, verify=verify, timeout=30) as kept:
        assert kept.get("/v2/").status_code == 200
        renewed = _renew(pki)
        _replace(pki.key, renewed.key_pem())
        _replace(pki.cert, renewed.cert_pem)
        assert wait_until(lambda: served_serial("127.0.0.1", server.port, pki.ca_path) == renewed.serial, 15), \
            server.log()
        # A connection opened before goes on with what it negotiated.
        assert kept.get("/v2/").status_code == 200
    assert server.proc is not None and server.proc.poll() is None
    assert "TLS certificate reloaded" in server.log()


def test_a_bad_pair_keeps_the_certificate_served_and_is_logged(tls_server: TLSServers, pki: PKI) -> None:
    server = tls_server()
    renewed = _renew(pki)
    _replace(pki.cert, renewed.cert_pem)  # the key still is the old one: not a pair
    # The files are looked at when a connection arrives: each poll brings one.
    assert wait_until(lambda: served_serial("127.0.0.1", server.port, pki.ca_path) == pki.serial
                      and "TLS certificate not reloaded" in server.log(), 15), server.log()
    assert "http.tls.key" in server.log()
    assert served_serial("127.0.0.1", server.port, pki.ca_path) == pki.serial
    with httpx.Client(base_url=server.url, verify=client_context(pki.ca_path), timeout=30) as client:
        assert client.get("/v2/").status_code == 200
    # The key arriving completes the pair: served from then on.
    _replace(pki.key, renewed.key_pem())
    assert wait_until(lambda: served_serial("127.0.0.1", server.port, pki.ca_path) == renewed.serial, 15), \
        server.log()


def test_sighup_reloads_a_certificate_rewritten_in_place(tls_server: TLSServers, pki: PKI) -> None:
    """Rewritten in place with the same size and modification time, the files look unchanged
    to the once-a-second check: only SIGHUP can make the server read them."""
    server = tls_server()
    old_cert, old_key = pki.cert.read_bytes(), pki.key.read_bytes()
    renewed = next(c for c in (_renew(pki) for _ in range(200))
                   if len(c.cert_pem) == len(old_cert) and len(c.key_pem()) == len(old_key))
    before = [os.stat(p) for p in (pki.cert, pki.key)]
    for path, data, st in ((pki.cert, renewed.cert_pem, before[0]), (pki.key, renewed.key_pem(), before[1])):
        with open(path, "r+b") as f:
            f.write(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = [os.stat(p) for p in (pki.cert, pki.key)]
    assert [(s.st_ino, s.st_size, s.st_mtime_ns) for s in after] == \
        [(s.st_ino, s.st_size, s.st_mtime_ns) for s in before]
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: served_serial("127.0.0.1", server.port, pki.ca_path) == renewed.serial, 15), \
        server.log()
    assert server.proc.poll() is None
