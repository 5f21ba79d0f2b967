"""Logins checked against an LDAP directory: zot's `http.auth.ldap` (pkg/api/ldap.go).

A login is zot's three steps: bind as the service account of `credentialsFile` (or
anonymously without one), search `baseDN` (one level, or the whole subtree with
`subtreeSearch`) for exactly one entry whose `userAttribute` is the user name (and that
matches `userFilter`), then bind as that entry with the password given. The values of the
entry's `userGroupAttribute` (e.g. `memberOf`: group DNs, as the directory writes them) are
the user's groups, beside those `accessControl.groups` gives the name. An empty password is
refused before anything is sent: to LDAP it would be an unauthenticated bind, which
succeeds as nobody (RFC 4513 5.1.2).

Transport, as zot reads its keys: `insecure: false` is LDAPS (TLS from the first byte, port
636 by default; `startTLS` is then ignored); `insecure: true` is plain LDAP (389), upgraded
with StartTLS when `startTLS` is true. TLS verifies the server against `caCert` (else the
system's CAs) and its name against `address`, unless `skipVerify`.

A directory that cannot be reached, a service account that cannot bind, a search that
fails: the login fails (401), with an error in the log naming the cause; nobody is ever let
in anonymously for it. Unlike zot, which retries for about half a minute, each attempt
costs at most one connect timeout (CONNECT_TIMEOUT) and answers.

A push sends credentials with every request, so a successful login is remembered for
CACHE_SECONDS (key: the user and a SHA-256 of the password; at most CACHE_SIZE entries).
A failed one never is. SIGHUP (`reload`) forgets every remembered login and rereads
`credentialsFile`; it only swaps references, so it is safe inside a signal handler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars

from ..config.auth import LDAPConfig

log = logging.getLogger("ocistore.auth")

CACHE_SECONDS = 60.0
CACHE_SIZE = 4096
CONNECT_TIMEOUT = 5   # seconds to open the connection (TLS included)
RECEIVE_TIMEOUT = 10  # seconds to wait for any one answer (whole seconds: ldap3 packs them into SO_RCVTIMEO)
_WHERE = "http.auth.ldap"


class LDAPSetupError(ValueError):
    """A file or value of `http.auth.ldap` that cannot serve, worded with its key path."""


@dataclass(frozen=True)
class ServiceAccount:
    bind_dn: str
    bind_password: str


def read_credentials(path: str) -> ServiceAccount:
    """zot's credentials file: a JSON object holding exactly `bindDN` and `bindPassword`
    (keys matched case-insensitively, as viper does), both non-empty."""
    where = f"{_WHERE}.credentialsFile"
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as exc:
        raise LDAPSetupError(f"{where}: {path}: cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LDAPSetupError(f"{where}: {path}: not a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise LDAPSetupError(f"{where}: {path}: expected a JSON object with bindDN and bindPassword")
    found: dict[str, Any] = {}
    for key, value in raw.items():
        name = {"binddn": "bindDN", "bindpassword": "bindPassword"}.get(str(key).lower())
        if name is None:
            raise LDAPSetupError(f"{where}: {path}: unknown key {key!r} (expected bindDN and bindPassword)")
        found[name] = value
    for name in ("bindDN", "bindPassword"):
        if not isinstance(found.get(name), str) or not found[name]:
            raise LDAPSetupError(f"{where}: {path}: {name} is missing or empty")
    return ServiceAccount(found["bindDN"], found["bindPassword"])


def _ca_text(path: str) -> str:
    where = f"{_WHERE}.caCert"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise LDAPSetupError(f"{where}: {path}: cannot read: {exc.strerror}") from None
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise LDAPSetupError(f"{where}: {path}: no PEM certificate can be read from it ({exc})") from None
    return text


@dataclass(frozen=True)
class _Remembered:
    expires: float
    groups: frozenset[str]
    generation: int


class LDAPLogins:
    """The directory of one `http.auth.ldap` block; `login` blocks (run it off the event loop)."""

    def __init__(self, config: LDAPConfig, clock: Callable[[], float] = time.monotonic) -> None:
        """LDAPSetupError when the credentials file, the CA file or userFilter cannot serve."""
        self.config = config
        self.clock = clock
        self.account = read_credentials(config.credentials_file) if config.credentials_file else None
        self._ca = _ca_text(config.ca_cert) if config.ca_cert else None
        try:
            parse_filter(self._user_filter("x"), None, False, False, None, False)
        except LDAPException as exc:
            raise LDAPSetupError(f"{_WHERE}.userFilter: {config.user_filter!r} does not make an LDAP filter: "
                                 f"{exc}") from None
        scheme = "ldap" if config.insecure else "ldaps"
        self.url = f"{scheme}://{config.address}:{config.effective_port}"
        self._lock = threading.Lock()
        self._memo: OrderedDict[tuple[str, bytes], _Remembered] = OrderedDict()
        self._generation = 0
        log.info("LDAP %s%s: users by %s under %s", self.url,
                 " with StartTLS" if config.insecure and config.start_tls else "", config.user_attribute,
                 config.base_dn)

    def _user_filter(self, user: str) -> str:
        match = f"({self.config.user_attribute}={user})"
        extra = self.config.user_filter.strip()
        if not extra:
            return match
        return f"(&{match}{extra if extra.startswith('(') else f'({extra})'})"

    def reload(self) -> str:
        """SIGHUP: forget remembered logins, reread the credentials file (a bad one keeps the
        account read before, with an error logged). No lock is taken: a signal handler may
        interrupt a holder."""
        self._generation += 1
        if self.config.credentials_file:
            try:
                self.account = read_credentials(self.config.credentials_file)
            except LDAPSetupError as exc:
                log.error("LDAP: %s; the service account read before stays", exc)
        return "LDAP logins forgotten, credentials reread"

    def remembered(self, user: str, password: str) -> frozenset[str] | None:
        """The groups of a login verified within CACHE_SECONDS; None if there is none. No I/O."""
        key = (user, hashlib.sha256(password.encode()).digest())
        with self._lock:
            found = self._memo.get(key)
            if found is None:
                return None
            if found.generation != self._generation or found.expires <= self.clock():
                del self._memo[key]
                return None
            self._memo.move_to_end(key)
            return found.groups

    def login(self, user: str, password: str) -> frozenset[str] | None:
        """The user's groups if the directory accepts the password, else None (logged)."""
        if not user or not password:
            log.info("LDAP: login of %r refused: an empty user name or password is never sent to LDAP", user)
            return None
        groups = self.remembered(user, password)
        if groups is not None:
            return groups
        generation = self._generation
        try:
            groups = self._ask(user, password)
        except Exception:  # whatever goes wrong in the client, the login fails: never a 500, never anonymous
            log.exception("LDAP %s: login of %r failed unexpectedly: refused", self.url, user)
            return None
        if groups is not None:
            with self._lock:
                if generation == self._generation:  # not for a login checked across a SIGHUP
                    key = (user, hashlib.sha256(password.encode()).digest())
                    self._memo[key] = _Remembered(self.clock() + CACHE_SECONDS, groups, generation)
                    while len(self._memo) > CACHE_SIZE:
                        self._memo.popitem(last=False)
        return groups

    def _server(self) -> ldap3.Server:
        config = self.config
        tls = ldap3.Tls(validate=ssl.CERT_NONE if config.skip_verify else ssl.CERT_REQUIRED,
                        ca_certs_data=self._ca, sni=config.address, version=None)
        return ldap3.Server(config.address, port=config.effective_port, use_ssl=not config.insecure, tls=tls,
                            get_info=ldap3.NONE, connect_timeout=CONNECT_TIMEOUT)

    def _ask(self, user: str, password: str) -> frozenset[str] | None:
        config = self.config
        account = self.account
        connection = ldap3.Connection(
            self._server(), user=account.bind_dn if account else None,
            password=account.bind_password if account else None,
            authentication=ldap3.SIMPLE if account else ldap3.ANONYMOUS,
            receive_timeout=RECEIVE_TIMEOUT, raise_exceptions=False, read_only=True, auto_referrals=False)
        try:
            try:
                connection.open()
                if config.insecure and config.start_tls and not connection.start_tls():
                    raise LDAPException(f"StartTLS refused: {connection.result}")
            except (LDAPException, OSError) as exc:
                log.error("LDAP %s cannot be reached (%s): logins through LDAP fail until it answers", self.url,
                          exc)
                return None
            if not connection.bind():
                who = account.bind_dn if account else "anonymously"
                log.error("LDAP %s: the search bind as %s failed (%s): logins through LDAP fail", self.url, who,
                          _result(connection))
                return None
            attributes = [config.user_group_attribute] if config.user_group_attribute else []
            scope = ldap3.SUBTREE if config.subtree_search else ldap3.LEVEL
            ok = connection.search(config.base_dn, self._user_filter(escape_filter_chars(user)), search_scope=scope,
                                   attributes=attributes, size_limit=2, dereference_aliases=ldap3.DEREF_NEVER)
            entries = [e for e in connection.response or [] if e.get("type") == "searchResEntry"]
            if not ok and connection.result.get("result") not in (0, 4):  # 4: sizeLimitExceeded
                log.error("LDAP %s: searching %s for %r failed (%s)", self.url, config.base_dn, user,
                          _result(connection))
                return None
            if len(entries) != 1:
                log.info("LDAP %s: login of %r refused: %s under %s", self.url, user,
                         "no such user" if not entries else "several entries match", config.base_dn)
                return None
            entry = entries[0]
            values = entry.get("attributes", {}).get(config.user_group_attribute, []) if attributes else []
            groups = frozenset(str(v) for v in (values if isinstance(values, list) else [values]))
            if not connection.rebind(user=entry["dn"], password=password, authentication=ldap3.SIMPLE):
                log.info("LDAP %s: login of %r refused: %s", self.url, user, _result(connection))
                return None
            return groups
        except (LDAPException, OSError) as exc:
            log.error("LDAP %s: login of %r failed on the way (%s): refused", self.url, user, exc)
            return None
        finally:
            try:
                connection.unbind()
            except (LDAPException, OSError):
                pass


def _result(connection: ldap3.Connection) -> str:
    result = connection.result or {}
    return str(result.get("description") or result.get("message") or result) or "no answer"
