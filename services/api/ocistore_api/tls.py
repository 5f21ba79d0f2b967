"""The verified client certificate of a TLS connection, as the app sees it.

`connections.GuardedProtocol` puts a connection's `ClientCertificate` (or None) into every
request's `scope["state"]` under CLIENT_CERTIFICATE; `client_certificate(scope)` reads it,
and `auth.guard` hands it to `Access.decide`, which names the client by zot's
`http.auth.mtls` rules when the request carries no credentials (see `ocistore.auth.gate`).
A request without a certificate is anonymous there, and answered as the policies say:
401 where mutual TLS is the only way in, as zot answers it.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from ocistore.tls_identity import ClientCertificate

CLIENT_CERTIFICATE = "client_certificate"


def client_certificate(scope: Scope | dict[str, Any]) -> ClientCertificate | None:
    """The verified client certificate of the request's connection; None without one."""
    cert = (scope.get("state") or {}).get(CLIENT_CERTIFICATE)
    return cert if isinstance(cert, ClientCertificate) else None
