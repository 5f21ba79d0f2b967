"""zot's access-control policies evaluated (pkg/api/authz.go), and nothing else.

Which policy group applies to a repository: the one whose glob matches it and is longest
(zot compares the patterns' lengths in bytes). zot walks a Go map, so between two equally
long matching globs it picks at random; here the first in the file wins, so every replica
and every request decides alike. Within the group a user is allowed an action by a policy
naming the user, or one of the user's groups, with that action; then by `defaultPolicy`
(any logged-in user) or `anonymousPolicy` (a request without credentials). Failing that,
`adminPolicy` grants its actions on every repository to its users and groups.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config.auth import AccessControlConfig, PolicyGroup
from ..globs import compile_glob

log = logging.getLogger("ocistore.auth")

READ, CREATE, UPDATE, DELETE = "read", "create", "update", "delete"
# The spec's tag grammar: zot ignores `?tag=` values that are not tags when it picks the actions.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user with the groups the config puts them in, or nobody (anonymous)."""

    user: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymous(self) -> bool:
        return self.user is None


ANONYMOUS = Identity()


class Policies:
    """One `accessControl` block, ready to answer; None stands for "no access control":
    whoever is let in may do anything."""

    def __init__(self, config: AccessControlConfig | None, directory_groups: bool = False) -> None:
        """`directory_groups`: logins bring groups of their own (LDAP), so groups that
        `groups` does not define are expected."""
        self.config = config
        groups = config.groups if config is not None else {}
        self._groups_of: dict[str, frozenset[str]] = {}
        for name, group in groups.items():
            for user in group.users:
                self._groups_of[user] = self._groups_of.get(user, frozenset()) | {name}
        # Longest pattern first; equally long ones keep the file's order (sorted is stable).
        self._by_length = sorted(((compile_glob(p), g) for p, g in (config.repositories if config else {}).items()),
                                 key=lambda item: -len(item[0].pattern.encode()))
        if config is not None and not directory_groups and (empty := config.undefined_groups()):
            log.warning("accessControl: policies name groups that accessControl.groups does not define, so "
                        "nobody is in them: %s", ", ".join(sorted(empty)))

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def identity(self, user: str) -> Identity:
        return Identity(user, self._groups_of.get(user, frozenset()))

    def anonymous_anywhere(self) -> bool:
        """Whether a request without credentials may be allowed somewhere (zot: then it is not
        challenged before authorization looks at it)."""
        return self.config is not None and self.config.anonymous_anywhere()

    def mixed(self) -> bool:
        """Anonymous access beside access that needs a login: the case where Docker must be
        challenged on `GET /v2/`, or it never sends the credentials it has."""
        return self.config is not None and self.config.anonymous_anywhere() and not self.config.only_anonymous()

    def group_for(self, repository: str) -> PolicyGroup | None:
        for glob, group in self._by_length:
            if glob.matches(repository):
                return group
        return None

    def allows(self, who: Identity, action: str, repository: str) -> bool:
        if self.config is None:
            return True
        group = self.group_for(repository)
        if group is not None and _permitted(group, who, action):
            return True
        return self.is_admin(who) and action in self.config.admin_policy.actions

    def is_admin(self, who: Identity) -> bool:
        """A user or group of `adminPolicy` (zot's isAdmin: whatever its actions)."""
        if self.config is None or who.user is None:
            return False
        admin = self.config.admin_policy
        return who.user in admin.users or bool(who.groups & set(admin.groups))

    def may_read_metrics(self, who: Identity) -> bool:
        """zot's MetricsAuthzHandler: `metrics.users`, or `metrics.anonymousPolicy` for anonymous."""
        if self.config is None:
            return True
        metrics = self.config.metrics
        if who.user is None:
            return READ in metrics.anonymous_policy
        return who.user in metrics.users


def _permitted(group: PolicyGroup, who: Identity, action: str) -> bool:
    if who.user is None:
        return action in group.anonymous_policy
    for policy in group.policies:
        if action in policy.actions and (who.user in policy.users or who.groups & set(policy.groups)):
            return True
    return action in group.default_policy


def manifest_write_actions(existing_tags: Sequence[str], reference: str, query_tags: Sequence[str]) -> set[str]:
    """What a manifest PUT needs (zot's manifestWriteAuthzChecks): by tag, `update` when the
    tag exists and `create` when it does not; by digest, `update` if any `?tag=` exists and
    `create` if any is new or none exists."""
    existing = set(existing_tags)
    if ":" not in reference:
        return {UPDATE if reference in existing else CREATE}
    tags = {t.strip() for t in query_tags if _TAG.fullmatch(t.strip())}
    old, new = tags & existing, tags - existing
    return ({CREATE} if new or not old else set()) | ({UPDATE} if old else set())
