"""zot's `http.auth` and `http.accessControl` blocks, and how they must agree.

The models only; what they mean is `ocistore.auth`'s. Everything that could make a
config silently weaker than it reads is refused here, so it fails `verify` and `serve`:
an authentication method ocistore does not offer (by name), an `auth` block that names no
method, and access control with policies for users when nobody can log in (zot's
`validateAuthzPolicies`: zot would serve such a config with no authentication at all).
Whether the htpasswd file exists and holds only bcrypt entries is checked by
`ocistore.auth.Access`, which `verify` and `serve` both build.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator

from ..globs import check_glob
from .base import Block, Whole, key_error

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


class AuthConfig(Block):
    """Who may log in: an htpasswd file of bcrypt entries. The other methods zot knows are
    refused by name, so a config that relies on one never runs without it."""

    REFUSED: ClassVar[dict[str, str]] = {
        "ldap": f"LDAP authentication: {_LATER}; use htpasswd meanwhile",
        "bearer": f"bearer tokens: {_LATER}; use htpasswd meanwhile",
        "openid": "OpenID login (zot's UI sessions) is not offered",
        "apikey": "API keys (zot's UI sessions and metaDB) are not offered",
        "sessionkeysfile": "session keys belong to zot's OpenID and API-key sessions, which are not offered",
        "sessiondriver": "session storage belongs to zot's OpenID and API-key sessions, which are not offered",
        "securesession": "session cookies belong to zot's OpenID and API-key sessions, which are not offered",
        "mtls": f"client-certificate identities: {_LATER}",
    }

    # zot's int seconds slept before answering a failed login.
    fail_delay: Annotated[Whole, Field(ge=0, le=3600)] = 0
    htpasswd: HtpasswdConfig | None = None


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
        its LDAP would supply, so they are accepted; until LDAP is offered nobody is in them."""
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


def check_auth(auth: AuthConfig | None, access: AccessControlConfig | None) -> None:
    """The checks between the blocks, run at `http`'s level and reported at the key concerned."""
    if auth is not None and auth.htpasswd is None:
        raise key_error("auth", "names no authentication method: add htpasswd.path (zot would serve such a "
                                "config without authentication)")
    if access is None:
        return
    if (auth is None or auth.htpasswd is None) and not access.only_anonymous():
        raise key_error("accessControl", "grants users, groups, defaultPolicy or metrics.users, but http.auth "
                                         "names no way to log in (htpasswd); without one only anonymousPolicy "
                                         "can apply")
