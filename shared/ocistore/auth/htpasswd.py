"""Logins from an htpasswd file of bcrypt entries, reread when it changes.

zot reads `user:hash` lines and verifies bcrypt hashes (`$2a$`, `$2b$`, `$2y$`); ocistore
accepts nothing else, and refuses a file holding anything else when it is first read
(`verify`, `serve`), so a user whose entry could never log in is found before the first
push, not by that user.

The file is watched by polling on use: at most once a second its identity (device, inode),
size and modification time are compared with those of the last good read, which also
catches a Kubernetes Secret swapped by rename. A reload that finds the file missing or bad
keeps the last good entries and logs once per change, so a half-written file never locks
everybody out. Every replica reads the same file, so within that second every replica
decides a login the same way.

bcrypt is slow on purpose (50-250 ms), and clients send Basic credentials on every request
of a push. A verified (user, sha256(password)) pair is remembered, in a bounded memo
cleared whenever the file changes; a failed check is never remembered, so each wrong guess
costs the full bcrypt time (and `failDelay`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import bcrypt

log = logging.getLogger("ocistore.auth")

RECHECK_SECONDS = 1.0
MEMO_SIZE = 4096
# bcrypt uses only a password's first 72 bytes; Go's CompareHashAndPassword (zot) ignores the rest.
BCRYPT_MAX = 72
_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
# Checked against when the user is unknown, so the answer takes as long as for a known user.
_DUMMY = b"$2b$10$IGauoVwiYsW2ud/lBRd/cu/B2whhpQ1iqGDlCHMNyhg0rZRP4s7T6"  # of a random password nobody knows


class HtpasswdError(ValueError):
    """The file cannot serve as the list of logins: unreadable, or an entry is not bcrypt."""


def parse_htpasswd(text: bytes, where: str) -> dict[str, bytes]:
    """`user:hash` lines -> {user: hash}; blank lines and `#` comments are skipped."""
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, digest = line.partition(b":")
        if not sep or not user:
            raise HtpasswdError(f"{where}: line {number}: expected user:bcrypt-hash")
        try:
            name = user.decode()
        except UnicodeDecodeError:
            raise HtpasswdError(f"{where}: line {number}: the user name is not UTF-8") from None
        if not _BCRYPT.fullmatch(digest):
            raise HtpasswdError(f"{where}: line {number} (user {name!r}): not a bcrypt hash ($2a$, $2b$ or $2y$); "
                                "make it with `htpasswd -B` or bcrypt")
        if name in entries:
            raise HtpasswdError(f"{where}: line {number}: user {name!r} is listed twice")
        entries[name] = digest
    return entries


@dataclass(frozen=True)
class _Fingerprint:
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Fingerprint:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: str) -> tuple[_Fingerprint, dict[str, bytes]]:
    try:
        with open(path, "rb") as f:
            fingerprint = _Fingerprint.of(os.fstat(f.fileno()))
            text = f.read()
    except OSError as exc:
        raise HtpasswdError(f"{path}: cannot read: {exc.strerror}") from None
    return fingerprint, parse_htpasswd(text, path)


class Htpasswd:
    """The logins of one file; `check` is thread-safe (it runs off the event loop)."""

    def __init__(self, path: str) -> None:
        """Read the file now: HtpasswdError if it is missing or bad (the config is then refused)."""
        self.path = path
        self._lock = threading.Lock()
        self._fingerprint, self._entries = _read(path)
        self._checked = time.monotonic()
        self._refused: object = None  # what the last failed reload saw, so it is logged once
        self._memo: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        log.info("htpasswd %s: %d users", path, len(self._entries))

    @property
    def users(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._entries)

    def remembered(self, user: str, password: str) -> bool:
        """Whether the pair was verified against the current file: no bcrypt, no thread needed."""
        key = (user, hashlib.sha256(password.encode()).digest())
        with self._lock:
            self._reload_if_changed()
            if key in self._memo:
                self._memo.move_to_end(key)
                return True
        return False

    def check(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s. Blocks for bcrypt's time unless remembered."""
        if self.remembered(user, password):
            return True
        secret = password.encode()
        key = (user, hashlib.sha256(secret).digest())
        with self._lock:
            digest = self._entries.get(user)
            generation = self._fingerprint
        ok = bcrypt.checkpw(secret[:BCRYPT_MAX], digest if digest is not None else _DUMMY) and digest is not None
        if ok:
            with self._lock:
                if self._fingerprint == generation:  # not for a file that changed meanwhile
                    self._memo[key] = None
                    while len(self._memo) > MEMO_SIZE:
                        self._memo.popitem(last=False)
        return ok

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        try:
            current = _Fingerprint.of(os.stat(self.path))
        except OSError as exc:
            self._keep(f"{self.path}: cannot read: {exc.strerror}", exc.strerror)
            return
        if current == self._fingerprint:
            return
        try:
            fingerprint, entries = _read(self.path)
        except HtpasswdError as exc:
            self._keep(str(exc), current)
            return
        self._fingerprint, self._entries, self._refused = fingerprint, entries, None
        self._memo.clear()
        log.info("htpasswd %s changed: reloaded, %d users", self.path, len(entries))

    def _keep(self, why: str, seen: object) -> None:
        if seen != self._refused:
            self._refused = seen
            log.error("htpasswd reload failed, keeping the %d users read before: %s", len(self._entries), why)
