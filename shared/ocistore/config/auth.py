"""zot's `http.auth` and `http.accessControl` blocks, and how they must agree.

The models only; what they mean is `ocistore.auth`'s. Everything that could make a
config silently weaker than it reads is refused here, so it fails `verify` and `serve`:
an authentication method ocistore does not offer (by name), an `auth` block that names no
method, and access control with policies for users when nobody can log in (zot's
`validateAuthzPolicies`: zot would serve such a config with no authentication at all).
Whether the files named exist and hold what they must (the htpasswd file only bcrypt
entries, LDAP's credentialsFile a bindDN and bindPassword, bearer's cert a public key) is
checked by `ocistore.auth.Access`, which `verify` and `serve` both build.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator

from ..globs import check_glob
from .base import Block, Flag, Whole, key_error
from .tls import MTLSConfig, TLSConfig

# The actions zot's policies grant (pkg/api/constants); ocistore maps requests to them.
ActionName = Literal["read", "create", "update", "delete"]
_ACTIONS = ("read", "create", "update", "delete")


def _action(value: Any) -> Any:
    if isinstance(value, str) and value.lower() == "detectmanifestcollision":
        raise ValueError("detectManifestCollision (zot refusing to delete a manifest that several tags "
                         "share) is not offered")
    if isinstance(value, str) and value in _ACTIONS:
        return value
    raise ValueError(f"expected one of {', '.join(_ACTIONS)}")


Action = Annotated[ActionName, BeforeValidator(_action)]

_LATER = "planned, not there yet"


class HtpasswdConfig(Block):
    path: str

    @field_validator("path")
    @classmethod
    def _named(cls, path: str) -> str:
        if not path:
            raise ValueError("empty: zot would take that as no htpasswd, and serve without authentication")
        return path


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("empty")
    return value


class LDAPConfig(Block):
    """zot's `http.auth.ldap`: Basic credentials checked by binding as the user, found by
    `userAttribute` under `baseDN` with the service account of `credentialsFile`."""

    REFUSED: ClassVar[dict[str, str]] = {
        "binddn": "zot reads bindDN from the file credentialsFile names, never from the config",
        "bindpassword": "zot reads bindPassword from the file credentialsFile names, never from the config",
    }

    address: str
    # None: 636 for LDAPS (insecure false), 389 for plain LDAP and StartTLS.
    port: Annotated[Whole, Field(ge=1, le=65535)] | None = None
    # zot's meaning, which its key names hide: insecure false is LDAPS (TLS from the first
    # byte, startTLS ignored); insecure true is plain LDAP, upgraded by StartTLS if startTLS.
    insecure: Flag = False
    start_tls: Annotated[Flag, Field(alias="startTLS")] = False
    skip_verify: Flag = False
    # false: the user is looked for one level below baseDN only (zot's default).
    subtree_search: Flag = False
    base_dn: Annotated[str, Field(alias="baseDN")]
    user_attribute: str
    user_filter: str = ""
    user_group_attribute: str = ""
    # A JSON file {"bindDN": ..., "bindPassword": ...}; none: the search binds anonymously.
    credentials_file: str | None = None
    ca_cert: Annotated[str | None, Field(alias="caCert")] = None

    @field_validator("address", "base_dn", "user_attribute")
    @classmethod
    def _required(cls, value: str) -> str:
        return _named(value)

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (389 if self.insecure else 636)


class BearerConfig(Block):
    """zot's `http.auth.bearer`: the distribution token protocol. Clients are sent to `realm`
    for a token for `service`; tokens are JWTs signed by the key of the certificate `cert`."""

    REFUSED: ClassVar[dict[str, str]] = {
        "oidc": "OIDC workload-identity tokens are not offered",
        "awssecretsmanager": "keys from AWS Secrets Manager are not offered: give the certificate as cert",
        "upstreamtokenendpoint": "proxying a token endpoint is not offered",
    }

    realm: str
    service: str
    cert: str

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s\"]+", value):
            raise ValueError("expected the token endpoint's absolute URL, e.g. https://auth.example.org/token")
        return value

    @field_validator("service", "cert")
    @classmethod
    def _filled(cls, value: str) -> str:
        if not value.strip() or '"' in value:
            raise ValueError("expected a non-empty value without double quotes")
        return value


class AuthConfig(Block):
    """Who may log in: htpasswd's bcrypt entries, then LDAP; or bearer tokens instead; client
    certificates (`mtls`, with `http.tls.cacert`) name a client that sent no credentials. The
    other methods zot knows are refused by name, so a config that relies on one never runs
    without it."""

    REFUSED: ClassVar[dict[str, str]] = {
        "openid": "OpenID login (zot's UI sessions) is not offered",
        "apikey": "API keys (zot's UI sessions and metaDB) are not offered",
        "sessionkeysfile": "session keys belong to zot's OpenID and API-key sessions, which are not offered",
        "sessiondriver": "session storage belongs to zot's OpenID and API-key sessions, which are not offered",
        "securesession": "session cookies belong to zot's OpenID and API-key sessions, which are not offered",
    }

    # zot's int seconds slept before answering a failed login.
    fail_delay: Annotated[Whole, Field(ge=0, le=3600)] = 0
    htpasswd: HtpasswdConfig | None = None
    ldap: LDAPConfig | None = None
    bearer: BearerConfig | None = None
    mtls: MTLSConfig | None = None

    @property
    def basic(self) -> bool:
        """Whether Basic credentials can log anybody in (htpasswd or LDAP)."""
        return self.htpasswd is not None or self.ldap is not None


def _names(value: Any) -> Any:
    """A list of names; zot's viper would take a single string as a one-element list."""
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_names)]
Actions = Annotated[list[Action], BeforeValidator(_names)]


class Policy(Block):
    REFUSED: ClassVar[dict[str, str]] = {"conditions": f"CEL policy conditions: {_LATER}"}

    users: Names = Field(default_factory=list)
    groups: Names = Field(default_factory=list)
    actions: Actions = Field(default_factory=list)


class PolicyGroup(Block):
    """What applies to the repositories one glob selects."""

    policies: list[Policy] = Field(default_factory=list)
    default_policy: Actions = Field(default_factory=list)  # any authenticated user
    anonymous_policy: Actions = Field(default_factory=list)  # a request without credentials


class Group(Block):
    users: Names = Field(default_factory=list)


class MetricsAccess(Block):
    users: Names = Field(default_factory=list)
    anonymous_policy: Actions = Field(default_factory=list)


class AccessControlConfig(Block):
    # Glob -> policies. Keys are patterns, kept as written (a glob is case-sensitive).
    repositories: dict[str, PolicyGroup] = Field(default_factory=dict)
    admin_policy: Policy = Field(default_factory=Policy)
    groups: dict[str, Group] = Field(default_factory=dict)
    metrics: MetricsAccess = Field(default_factory=MetricsAccess)

    @field_validator("repositories")
    @classmethod
    def _globs(cls, repositories: dict[str, PolicyGroup]) -> dict[str, PolicyGroup]:
        for pattern in repositories:
            check_glob(pattern)
        return repositories

    def undefined_groups(self) -> set[str]:
        """Groups policies name that `groups` does not define. zot's own examples name groups
        its LDAP supplies (`userGroupAttribute`), so they are accepted; without LDAP nobody is in them."""
        return {g for _, policy in self.all_policies() for g in policy.groups} - set(self.groups)

    def all_policies(self) -> list[tuple[str, Policy]]:
        """Every user/group policy with where the config spells it."""
        found = [(f"repositories.{p}.policies.{i}", pol)
                 for p, group in self.repositories.items() for i, pol in enumerate(group.policies)]
        return [*found, ("adminPolicy", self.admin_policy)]

    def only_anonymous(self) -> bool:
        """Whether nothing here needs a logged-in user (zot's ContainsOnlyAnonymousPolicy, with
        the metrics block's users counted too: they could never log in either)."""
        return not (self.metrics.users
                    or any(p.users or p.groups for _, p in self.all_policies())
                    or any(g.default_policy for g in self.repositories.values()))

    def anonymous_anywhere(self) -> bool:
        """Whether some request without credentials may be allowed (zot's AnonymousPolicyExists)."""
        return any(g.anonymous_policy for g in self.repositories.values())


def check_auth(auth: AuthConfig | None, access: AccessControlConfig | None, tls: TLSConfig | None = None) -> None:
    """The checks between the blocks, run at `http`'s level and reported at the key concerned."""
    certificates = tls is not None and bool(tls.cacert)  # zot's IsMTLSAuthEnabled: cacert is a way to log in
    if auth is not None and not (auth.basic or auth.bearer is not None or auth.mtls is not None):
        raise key_error("auth", "names no authentication method: add htpasswd.path, ldap or bearer (zot would "
                                "serve such a config without authentication)")
    if auth is not None and auth.mtls is not None and not certificates:
        raise key_error("auth", "mtls names clients by their certificates, but http.tls has no cacert to ask "
                                "for them")
    if auth is not None and auth.bearer is not None:
        others = [k for k, v in (("htpasswd", auth.htpasswd), ("ldap", auth.ldap), ("mtls", auth.mtls)) if v]
        if others:
            raise key_error("auth", f"bearer cannot be combined with {', '.join(others)}: zot uses bearer tokens "
                                    "alone and would ignore the rest")
        if access is not None:
            raise key_error("accessControl", "bearer tokens carry their own grants (their access claims), and zot "
                                             "ignores accessControl with them: remove one of the two")
    if access is None:
        return
    if not (auth is not None and auth.basic) and not certificates and not access.only_anonymous():
        raise key_error("accessControl", "grants users, groups, defaultPolicy or metrics.users, but http.auth "
                                         "names no way to log in (htpasswd or ldap) and http.tls no cacert for "
                                         "client certificates; without one only anonymousPolicy can apply")
