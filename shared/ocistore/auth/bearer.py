"""Bearer tokens: zot's `http.auth.bearer`, the distribution token protocol
(distribution/distribution docs/spec/auth/token.md and jwt.md).

A request without a token is answered 401 with
`WWW-Authenticate: Bearer realm="<realm>",service="<service>",scope="<scopes>"`; the client
asks the token server at `realm` for a token for those scopes and sends it back as
`Authorization: Bearer <token>`. A token is a JWT signed by the private key of the
certificate (or public key) in `cert`, with RS*, PS*, ES* or EdDSA (zot's list; no HMAC,
so the public key can never serve as a shared secret).

What is checked: the signature; `exp` (required here, zot does not require it; a token
without an end would be good for ever), `nbf` and `iat` with a minute of leeway for clocks;
`aud` must name `service` (ocistore's addition: the spec's token server sets it, and it
keeps a token minted for another service of the same issuer out); and the `access` claim
must grant every scope the request needs, each entry `{"type", "name", "actions"}` (zot's
optional per-entry `exp` honoured). zot's mapping of requests to actions: GET and HEAD pull,
every other method (DELETE included) push; a mount also pulls its `from`. The catalog, the
metrics and the operations endpoints need `registry:catalog:*`, the one registry-wide scope
the spec names. `GET /v2/` needs a valid token and no scope.

As in zot, `accessControl` plays no part: the token's grants decide (the config refuses
the two together). A token that is bad or grants too little is answered 401 with the
challenge and `error="invalid_token"` or `error="insufficient_scope"` (RFC 6750), so a
client asks for a token with the scopes it lacks; zot answers a bad token without a
challenge, which leaves a client nothing to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..config.auth import BearerConfig

log = logging.getLogger("ocistore.auth")

ALGORITHMS = ["EdDSA", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
LEEWAY_SECONDS = 60
PULL, PUSH = "pull", "push"
CATALOG = ("registry", "catalog", "*")


class BearerSetupError(ValueError):
    """`http.auth.bearer.cert` cannot serve, worded with its key path."""


def load_public_key(path: str) -> Any:
    """The key that verifies tokens: a PEM certificate's, or a PEM public key (PKIX or PKCS#1),
    as zot's loadPublicKeyFromFile reads `cert`."""
    where = "http.auth.bearer.cert"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BearerSetupError(f"{where}: {path}: cannot read: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        pass
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BearerSetupError(f"{where}: {path}: neither a PEM certificate nor a PEM public key") from None


@dataclass(frozen=True)
class Scope:
    """One entry of a token request's `scope`: `repository:<name>:<actions>`."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def repository_scopes(grants: Sequence[tuple[str, str]]) -> list[Scope]:
    """Scopes for (repository, policy action) pairs: read is pull, anything else push."""
    wanted: dict[str, list[str]] = {}
    for repository, action in grants:
        actions = wanted.setdefault(repository, [])
        token_action = PULL if action == "read" else PUSH
        if token_action not in actions:
            actions.append(token_action)
    return [Scope("repository", name, tuple(sorted(actions))) for name, actions in wanted.items()]


@dataclass(frozen=True)
class TokenCheck:
    """What a request's token is good for: `subject` when it grants every scope; else the
    RFC 6750 `error` for the challenge (None: no token was sent) and why."""

    subject: str | None = None
    error: str | None = None
    reason: str = ""
    pulls: frozenset[str] = frozenset()  # the repositories the token may pull (a mount without `from` looks there)

    @property
    def ok(self) -> bool:
        return self.subject is not None


class BearerTokens:
    """One `http.auth.bearer` block, its key loaded."""

    def __init__(self, config: BearerConfig) -> None:
        """BearerSetupError when `cert` holds no public key."""
        self.config = config
        self.key = load_public_key(config.cert)
        # Only the algorithms of the key's own type: a token's header never picks how it is checked.
        kind = {rsa.RSAPublicKey: ("RS", "PS"), ec.EllipticCurvePublicKey: ("ES",),
                ed25519.Ed25519PublicKey: ("EdDSA",), ed448.Ed448PublicKey: ("EdDSA",)}
        prefixes = next((p for t, p in kind.items() if isinstance(self.key, t)), None)
        if prefixes is None:
            raise BearerSetupError(f"http.auth.bearer.cert: {config.cert}: a {type(self.key).__name__}, which "
                                   "signs no token algorithm (expected RSA, EC or Ed25519/Ed448)")
        self.algorithms = [a for a in ALGORITHMS if a.startswith(prefixes)]

    def challenge(self, scopes: Sequence[Scope], error: str | None = None) -> str:
        value = (f'Bearer realm="{self.config.realm}",service="{self.config.service}",'
                 f'scope="{" ".join(str(s) for s in scopes)}"')
        return value + (f',error="{error}"' if error else "")

    def check(self, authorization: Sequence[str], scopes: Sequence[Scope]) -> TokenCheck:
        if len(authorization) > 1:
            return TokenCheck(error="invalid_request", reason="several Authorization headers")
        scheme, _, token = (authorization[0].strip() if authorization else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return TokenCheck(reason="a bearer token is required")
        try:
            claims = jwt.decode(token.strip(), self.key, algorithms=self.algorithms, audience=self.config.service,
                                leeway=LEEWAY_SECONDS, options={"require": ["exp"]})
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            return TokenCheck(error="invalid_token", reason=f"the token was refused: {exc}")
        subject = str(claims.get("sub") or "")
        missing = [s for s in scopes if not _granted(claims.get("access"), s)]
        if missing:
            return TokenCheck(error="insufficient_scope",
                              reason=f"the token of {subject or 'nobody'} does not grant "
                                     f"{' '.join(str(s) for s in missing)}")
        access = claims.get("access")
        access = access if isinstance(access, list) else []
        pulls = frozenset(str(e.get("name")) for e in access if isinstance(e, dict) and e.get("type") == "repository"
                          and _granted(access, Scope("repository", str(e.get("name")), (PULL,))))
        return TokenCheck(subject=subject, pulls=pulls)


def _granted(access: Any, scope: Scope) -> bool:
    if not isinstance(access, list):
        return False
    now = time.time()
    for action in scope.actions:
        if not any(isinstance(entry, dict) and entry.get("type") == scope.type and entry.get("name") == scope.name
                   and isinstance(entry.get("actions"), list) and action in entry["actions"]
                   and not (isinstance(entry.get("exp"), int | float) and entry["exp"] < now)
                   for entry in access):
            return False
    return True
