"""The verified client certificate of a TLS connection, as the app sees it.

`connections.GuardedProtocol` puts a connection's `ClientCertificate` (or None) into every
request's `scope["state"]` under CLIENT_CERTIFICATE; `client_certificate(scope)` reads it,
and `ClientCertificate.identity(mtls)` names the client by zot's `http.auth.mtls` rules.

`RequireClientCertificate`: with `cacert` and no other way to authenticate (ocistore has no
`http.auth` yet, nor zot's anonymous policies), zot answers a request without a verified
client certificate 401 UNAUTHORIZED (pkg/api/authn.go: mTLS is on, nothing authenticated
the request). The handshake itself only asks for a certificate, as zot's
VerifyClientCertIfGiven does, so this is where such a client is refused. When ocistore's
authentication lands, its middleware makes this decision (a basic-auth client needs no
certificate) and this gate goes.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ocistore.errors import ErrorCode, RegistryError
from ocistore.tls_identity import ClientCertificate

from .responses import error_response

CLIENT_CERTIFICATE = "client_certificate"
# Probes answer without a certificate: a kubelet or load balancer has none.
UNGUARDED_PATHS = frozenset({"/livez", "/readyz"})
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Authorization Required"'}  # zot's authFail, without a realm


def client_certificate(scope: Scope | dict[str, Any]) -> ClientCertificate | None:
    """The verified client certificate of the request's connection; None without one."""
    cert = (scope.get("state") or {}).get(CLIENT_CERTIFICATE)
    return cert if isinstance(cert, ClientCertificate) else None


class RequireClientCertificate:
    """401 UNAUTHORIZED, in the spec's envelope, for a request without a verified client certificate."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNGUARDED_PATHS or client_certificate(scope) is not None:
            await self.app(scope, receive, send)
            return
        error = RegistryError(ErrorCode.UNAUTHORIZED, headers=CHALLENGE,
                              message="a client certificate signed by the registry's CA (http.tls.cacert) is required")
        await error_response(error)(scope, receive, send)
