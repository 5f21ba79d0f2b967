"""`http.tls.cacert`: client certificates asked for, verified if given, and who they name.

As zot: the handshake only *asks* for a certificate (VerifyClientCertIfGiven), so one the CA
did not sign fails it, and a client with none connects and is anonymous, answered 401 here
(mTLS being the only way to authenticate, and no anonymousPolicy, as in a zot config without
accessControl). What the certificate's identity may do under policies: tests/auth/test_mtls_auth.py.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ocistore.config.tls import MTLSConfig, TLSConfig
from ocistore.tls import ServerTLS
from ocistore.tls_identity import ClientCertificate, identity_from_cert
from tests.api.helpers import assert_error, push_random_image
from tests.certs import CA, client_context
from tests.tls.conftest import PKI, TLSServers


def test_without_a_client_certificate_a_request_is_refused_401(tls_server: TLSServers, pki: PKI) -> None:
    server = tls_server(cacert=True)
    with httpx.Client(base_url=server.url, verify=client_context(pki.ca_path), timeout=30) as client:
        refused = client.get("/v2/")
        assert_error(refused, 401, "UNAUTHORIZED")
        assert refused.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert_error(client.get("/v2/some/repo/tags/list"), 401, "UNAUTHORIZED")
        # Probes have no certificate to show.
        assert client.get("/livez").status_code == 200


def test_a_certificate_of_another_ca_fails_the_handshake(tls_server: TLSServers, pki: PKI, tmp_path: Path) -> None:
    server = tls_server(cacert=True)
    cert, key = CA("someone else's CA").issue("mallory", client=True).write(tmp_path / "other", "mallory")
    context = client_context(pki.ca_path, cert, key)
    with pytest.raises(ssl.SSLError) as refused, socket.create_connection(("127.0.0.1", server.port), 5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as conn:
        # TLS 1.3 verifies the client's certificate after the client's side of the handshake:
        # the refusal (an unknown-CA alert, or the server closing: uvloop may close before the
        # alert is out) arrives on the first read, instead of any HTTP answer.
        conn.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.recv(1024)
    assert isinstance(refused.value, ssl.SSLEOFError) or refused.value.reason == "TLSV1_ALERT_UNKNOWN_CA", \
        refused.value
    # The same request with the CA's own client certificate is answered.
    cert, key = pki.client("alice")
    with socket.create_connection(("127.0.0.1", server.port), 5) as raw, \
            client_context(pki.ca_path, cert, key).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 200")


def test_a_certificate_the_ca_signed_is_served(tls_server: TLSServers, pki: PKI) -> None:
    server = tls_server(cacert=True)
    cert, key = pki.client("alice")
    with httpx.Client(base_url=server.url, verify=client_context(pki.ca_path, cert, key), timeout=30) as client:
        assert client.get("/v2/").status_code == 200
        image = push_random_image(client, "mtls/app", "v1")
        got = client.get("/v2/mtls/app/manifests/v1", headers={"Accept": image.media_type})
        assert got.status_code == 200 and got.content == image.manifest


# --- who a verified certificate names: real handshakes against the server's own context

def _peercert(pki: PKI, cert: Path, key: Path) -> dict[str, Any]:
    """The `getpeercert()` dict a server with `cacert` gets from a client presenting `cert`."""
    server_ctx = ServerTLS(TLSConfig(cert=str(pki.cert), key=str(pki.key), cacert=str(pki.ca_path))).context
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            seen.update(tls.getpeercert() or {})
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), 5) as raw, \
                client_context(pki.ca_path, cert, key).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.recv(2) == b"ok"
    finally:
        thread.join(10)
        listener.close()
    return seen


def test_the_identity_is_the_common_name_by_default(pki: PKI) -> None:
    peer = _peercert(pki, *pki.client("alice", emails=("alice@example.org",)))
    assert identity_from_cert(peer) == "alice"
    cert = ClientCertificate.from_peercert(peer)
    assert cert is not None and cert.identity() == "alice"


def test_identity_attributes_are_tried_in_order(pki: PKI) -> None:
    peer = _peercert(pki, *pki.client("bob", emails=("bob@example.org", "b@example.org"),
                                      dns=("bob.example.org",)))
    assert identity_from_cert(peer, ["Email", "CommonName"]) == "bob@example.org"
    assert identity_from_cert(peer, ["URI", "DNSName"]) == "bob.example.org"  # no URI: the next one
    assert identity_from_cert(peer, ["URI"]) is None
    cert = ClientCertificate.from_peercert(peer)
    assert cert is not None
    assert cert.identity(MTLSConfig(identity_attributes=["email"], email_san_index=1)) == "b@example.org"
    # A client certificate without a common name falls through to the next attribute.
    nameless = _peercert(pki, *pki.ca.issue(None, client=True, emails=("anon@example.org",)).write(
        pki.directory, "nameless"))
    assert identity_from_cert(nameless, ["CommonName", "Email"]) == "anon@example.org"
    assert identity_from_cert(nameless) is None


def test_a_uri_identity_with_zots_uri_san_pattern(pki: PKI) -> None:
    peer = _peercert(pki, *pki.client("workload", uris=("spiffe://example.org/workload/builder",)))
    assert identity_from_cert(peer, ["URI", "CommonName"]) == "spiffe://example.org/workload/builder"
    assert identity_from_cert(peer, ["URI", "CommonName"], "spiffe://example.org/workload/(.*)") == "builder"
    # A pattern that does not match: zot's next attribute.
    assert identity_from_cert(peer, ["URI", "CommonName"], "spiffe://other.org/(.*)") == "workload"


def test_the_subject_identity_is_written_as_go_writes_it(pki: PKI) -> None:
    """zot's "Subject" is Go's pkix.Name.String(): most specific first, short names, and the
    attributes Go has no name for as OID=#DER at the end."""
    subject = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
               x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
               x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "builds"),
               x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ci@example.org")]
    issued = pki.ca.issue("ci bot", client=True, subject=subject)
    peer = _peercert(pki, *issued.write(pki.directory, "ci"))
    email_der = bytes([0x0C, len("ci@example.org")]) + b"ci@example.org"
    assert identity_from_cert(peer, ["Subject"]) == \
        f"CN=ci bot,OU=builds,O=Example\\, Inc.,C=US,1.2.840.113549.1.9.1=#{email_der.hex()}"


def test_no_certificate_is_no_identity() -> None:
    assert ClientCertificate.from_peercert(None) is None
    assert ClientCertificate.from_peercert({}) is None
    assert identity_from_cert(None) is None
