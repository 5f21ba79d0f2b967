"""The one decision: may this request, with these credentials, do what it needs?

Every route asks `Access.decide` with a `Need` (the API's adapter builds it from the route):
the registry's `/v2/` routes, the catalog, mount, and the operations endpoints (all but
`/livez` and `/readyz`, which are open). The answer
depends only on the request and on files every replica reads (the config, the htpasswd
file), never on what a process remembers of earlier requests.

Authentication is zot's (pkg/api/authn.go):
- several `Authorization` headers, a scheme other than Basic, or a wrong user or password
  is a failed login: 401 after `failDelay` seconds. A failed login never falls back to
  anonymous, even where anonymous access would be allowed;
- no credentials (or `Basic Og==`, the empty `:` clients send when they have none) is
  anonymous: challenged with 401 unless some `anonymousPolicy` exists (or the metrics
  path is open to anonymous), and on `GET /v2/` challenged also when anonymous and
  logged-in policies are mixed: Docker, and containers/image (skopeo, podman), send the
  credentials they hold only after a challenge there;
- without an htpasswd file nobody logs in, and a header is ignored (zot's "no
  authentication").

The other methods (ldap.py, bearer.py, and client certificates), as zot chains them:
- Basic credentials are checked against htpasswd, then LDAP; the first that accepts them
  names the user (LDAP adds the directory's groups to those of `accessControl.groups`);
- with `http.tls.cacert`, a request without credentials whose connection showed a verified
  client certificate is the user its certificate names (`http.auth.mtls`); one that names
  nobody is a failed login. Without a certificate it is anonymous, which is challenged
  unless some `anonymousPolicy` exists, as for logins;
- with `bearer`, tokens are the only method and their grants decide (bearer.py), as in zot.

Authorization is `Policies` (policy.py); a refusal is 401 for anonymous and 403 DENIED for a
user, so a user without the right learns nothing about whether a repository exists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import ConfigError, HTTPConfig
from ..config.tls import MTLSConfig
from ..tls_identity import ClientCertificate
from .bearer import CATALOG, BearerSetupError, BearerTokens, Scope, repository_scopes
from .htpasswd import Htpasswd, HtpasswdError
from .ldap import LDAPLogins, LDAPSetupError
from .policy import ANONYMOUS, READ, Identity, Policies


class Kind(enum.Enum):
    REPOSITORY = "repository"  # actions on repositories
    PROBE = "probe"            # GET /v2/: who you are, nothing more
    CATALOG = "catalog"        # let in, then shown only what it may read
    METRICS = "metrics"        # accessControl.metrics
    ADMIN = "admin"            # /storage/usage, /scrub/report: adminPolicy's users and groups


@dataclass(frozen=True)
class Need:
    kind: Kind
    grants: tuple[tuple[str, str], ...] = ()  # (repository, action) pairs, all required

    @classmethod
    def on(cls, repository: str, *actions: str) -> Need:
        return cls(Kind.REPOSITORY, tuple((repository, a) for a in actions))

    def also(self, repository: str, action: str) -> Need:
        return Need(self.kind, (*self.grants, (repository, action)))


class Outcome(enum.Enum):
    ALLOW = 200
    CHALLENGE = 401
    DENY = 403


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    identity: Identity = ANONYMOUS
    reason: str = ""
    delay: float = 0.0  # seconds to wait before answering (failDelay, after a failed login)
    challenge: str | None = None  # WWW-Authenticate of a 401 other than Basic's (bearer)

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW


@dataclass(frozen=True)
class Credentials:
    user: str | None = None
    password: str = ""
    problem: str | None = None  # set when the header is there but unusable

    @classmethod
    def parse(cls, headers: Sequence[str]) -> Credentials:
        """From the request's `Authorization` values (all of them: more than one is refused)."""
        if len(headers) > 1:
            return cls(problem="several Authorization headers")
        value = headers[0].strip() if headers else ""
        if not value or value.lower() == "basic og==":
            return cls()
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return cls(problem=f"{scheme[:20]!r} credentials are not accepted (only Basic)")
        try:
            text = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return cls(problem="Basic credentials that are not base64 of UTF-8")
        user, sep, password = text.partition(":")
        if not sep:
            return cls(problem="Basic credentials without a ':'")
        return cls(user, password)


@dataclass(frozen=True)
class TokenIdentity(Identity):
    """A bearer token's holder: `pulls` are the repositories the token may pull, where a mount
    without `from` may look; None (a catalog request, granted registry:catalog:*) is every one."""

    pulls: frozenset[str] | None = frozenset()


class Access:
    """`http.auth`, `http.accessControl` and `http.realm`, loaded."""

    def __init__(self, http: HTTPConfig) -> None:
        """ConfigError when the htpasswd file is missing or bad: `verify` and `serve` stop on it."""
        auth = http.auth
        self.realm = http.realm
        self.fail_delay = float(auth.fail_delay) if auth is not None else 0.0
        self.policies = Policies(http.access_control, directory_groups=auth is not None and auth.ldap is not None)
        path = auth.htpasswd.path if auth is not None and auth.htpasswd is not None else None
        try:
            self.htpasswd = Htpasswd(path) if path is not None else None
        except HtpasswdError as exc:
            raise ConfigError(f"http.auth.htpasswd.path: {exc}") from None
        self._more_methods(http)

    def _more_methods(self, http: HTTPConfig) -> None:
        """LDAP, bearer tokens and client certificates (ldap.py, bearer.py, tls_identity.py)."""
        auth = http.auth
        # zot's IsMTLSAuthEnabled: with cacert, a verified client certificate names its client.
        self.mtls = (auth.mtls if auth is not None else None) if http.tls is not None and http.tls.cacert else None
        if self.mtls is None and http.tls is not None and http.tls.cacert:
            self.mtls = MTLSConfig()
        try:
            self.ldap = LDAPLogins(auth.ldap) if auth is not None and auth.ldap is not None else None
            self.bearer = BearerTokens(auth.bearer) if auth is not None and auth.bearer is not None else None
        except (LDAPSetupError, BearerSetupError) as exc:
            raise ConfigError(str(exc)) from None

    @property
    def _logins(self) -> bool:
        """Whether anybody can be named (so an anonymous request may be challenged)."""
        return self.htpasswd is not None or self.ldap is not None or self.mtls is not None

    @property
    def enabled(self) -> bool:
        """Whether any request can be refused at all."""
        return self._logins or self.bearer is not None or self.policies.enabled

    async def identify(self, credentials: Credentials, certificate: ClientCertificate | None = None
                       ) -> Identity | Decision:
        """Who the credentials (or else the client certificate) name, or the failed login's decision."""
        if self.htpasswd is None and self.ldap is None:
            return self._certified(certificate)
        if credentials.problem is not None:
            return Decision(Outcome.CHALLENGE, reason=credentials.problem, delay=self.fail_delay)
        if credentials.user is None:
            return self._certified(certificate)
        user, password = credentials.user, credentials.password
        if self.htpasswd is not None and (self.htpasswd.remembered(user, password)
                                          or await asyncio.to_thread(self.htpasswd.check, user, password)):
            return self.policies.identity(user)  # bcrypt: off the loop, unless remembered
        if self.ldap is not None:
            groups = self.ldap.remembered(user, password)
            if groups is None:
                groups = await asyncio.to_thread(self.ldap.login, user, password)  # network: off the loop
            if groups is not None:
                named = self.policies.identity(user)
                return Identity(user, named.groups | groups)
        return Decision(Outcome.CHALLENGE, reason="wrong user name or password", delay=self.fail_delay)

    def _certified(self, certificate: ClientCertificate | None) -> Identity | Decision:
        """zot's mTLSAuthn: the verified certificate's identity; anonymous without one."""
        if self.mtls is None or certificate is None:
            return ANONYMOUS
        user = certificate.identity(self.mtls)
        if user is None:
            return Decision(Outcome.CHALLENGE, delay=self.fail_delay,
                            reason=f"the client certificate has none of {', '.join(self.mtls.identity_attributes)}")
        return self.policies.identity(user)

    async def decide(self, authorization: Sequence[str], need: Need,
                     certificate: ClientCertificate | None = None) -> Decision:
        if self.bearer is not None:
            return self._decide_bearer(authorization, need)
        who = await self.identify(Credentials.parse(authorization), certificate)
        if isinstance(who, Decision):
            return who
        if who.anonymous and self._logins:
            anonymous_metrics = need.kind is Kind.METRICS and READ in self._anonymous_metrics()
            if not (self.policies.anonymous_anywhere() or anonymous_metrics):
                return Decision(Outcome.CHALLENGE, reason="authentication required")
            if need.kind is Kind.PROBE and self.policies.mixed():
                return Decision(Outcome.CHALLENGE, reason="authentication required for some repositories")
        if self._authorized(who, need):
            return Decision(Outcome.ALLOW, who)
        outcome = Outcome.CHALLENGE if who.anonymous else Outcome.DENY
        return Decision(outcome, who, reason="not allowed by the access-control policy")

    def _decide_bearer(self, authorization: Sequence[str], need: Need) -> Decision:
        assert self.bearer is not None
        scopes = repository_scopes(need.grants) if need.kind is Kind.REPOSITORY else \
            [] if need.kind is Kind.PROBE else [Scope(*CATALOG[:2], (CATALOG[2],))]
        checked = self.bearer.check(authorization, scopes)
        if checked.ok:
            pulls = None if need.kind is Kind.CATALOG else checked.pulls
            return Decision(Outcome.ALLOW, TokenIdentity(checked.subject or None, pulls=pulls))
        return Decision(Outcome.CHALLENGE, reason=checked.reason,
                        challenge=self.bearer.challenge(scopes, checked.error))

    def _anonymous_metrics(self) -> list[str]:
        config = self.policies.config
        return list(config.metrics.anonymous_policy) if config is not None else []

    def _authorized(self, who: Identity, need: Need) -> bool:
        if need.kind in (Kind.PROBE, Kind.CATALOG):
            return True
        if need.kind is Kind.METRICS:
            return self.policies.may_read_metrics(who)
        if need.kind is Kind.ADMIN:
            # Without access control everybody let in may do anything, operations included.
            return self.policies.is_admin(who) if self.policies.enabled else True
        return all(self.policies.allows(who, action, repo) for repo, action in need.grants)

    def readable(self, who: Identity) -> Callable[[str], bool] | None:
        """What the catalog and a mount without `from` may look in; None: every repository."""
        if isinstance(who, TokenIdentity):
            pulls = who.pulls
            return None if pulls is None else pulls.__contains__
        if not self.policies.enabled:
            return None
        return lambda repository: self.policies.allows(who, READ, repository)
