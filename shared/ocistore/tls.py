"""The server's TLS: a context from `http.tls`, TLS 1.2 or later, and its certificate reloaded.

As zot does (pkg/api/controller.go): TLS 1.2 is the floor, TLS 1.2 is limited to ECDHE
suites with AES-GCM or ChaCha20, and with `cacert` a client certificate is asked for and
verified *if given* (Go's VerifyClientCertIfGiven): a certificate the CA did not sign fails
the handshake, a client with none connects without an identity. The certificate and key are
reloaded when their files change, without a restart (zot's TlsConfigWatcher), so a renewed
certificate reaches every new connection; `cacert` is read once at start, as in zot.

Reloading: the listening context's servername callback, which OpenSSL calls during every
handshake (with or without SNI), looks at the files at most once a second (or at once after
`request_reload`, on SIGHUP) and, when they changed, builds a whole new context from them.
A pair that does not load (a half-written file, a key of another certificate) keeps the
previous one and logs an error once per change. The handshake then switches to the newest
context: connections already open keep what they negotiated.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config.tls import TLSConfig

log = logging.getLogger("ocistore.tls")

# zot's TLS 1.2 suites (TLS 1.3's are fixed by OpenSSL and all acceptable).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
RELOAD_CHECK_INTERVAL = 1.0  # seconds between looks at the files, as zot's stat fallback


class TLSFileError(ValueError):
    """A file of `http.tls` that cannot serve, worded for the operator with its key path."""


class _Encrypted(Exception):
    """Raised by the password callback: ocistore (like zot) reads no passphrase."""


def _no_password() -> str:
    raise _Encrypted


def _read(where: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise TLSFileError(f"{where}: {path}: cannot read: {exc.strerror}") from None


def _certificates(where: str, path: str, text: str) -> None:
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise TLSFileError(f"{where}: {path}: no PEM certificate can be read from it ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


def server_context(tls: TLSConfig, where: str = "http.tls") -> ssl.SSLContext:
    """A server context from the files `tls` names; TLSFileError naming the key at fault."""
    _certificates(f"{where}.cert", tls.cert, _read(f"{where}.cert", tls.cert))
    _read(f"{where}.key", tls.key)
    ca_text = _read(f"{where}.cacert", tls.cacert) if tls.cacert else None
    if ca_text is not None:
        assert tls.cacert is not None
        _certificates(f"{where}.cacert", tls.cacert, ca_text)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    try:
        ctx.load_cert_chain(tls.cert, tls.key, password=_no_password)
    except _Encrypted:
        raise TLSFileError(f"{where}.key: {tls.key}: the key is encrypted; ocistore, like zot, needs it "
                           "without a passphrase") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(f"{where}.key: {tls.key}: not the key of the certificate in {where}.cert "
                               f"({tls.cert})") from None
        raise TLSFileError(f"{where}.key: {tls.key}: no PEM private key can be read from it "
                           f"({_reason(exc)})") from None
    except OSError as exc:  # gone between the read above and here
        raise TLSFileError(f"{where}: cannot read {exc.filename}: {exc.strerror}") from None
    if ca_text is not None:
        ctx.load_verify_locations(cadata=ca_text)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def check_files(tls: TLSConfig | None, where: str = "http.tls") -> list[str]:
    """`verify`'s findings for the files of `http.tls`: none when they would serve."""
    if tls is None:
        return []
    found = []
    if tls.cacert:  # on its own, so a bad CA file and a bad pair are both reported
        try:
            _certificates(f"{where}.cacert", tls.cacert, _read(f"{where}.cacert", tls.cacert))
        except TLSFileError as exc:
            found.append(str(exc))
    try:
        server_context(tls.model_copy(update={"cacert": None}), where)
    except TLSFileError as exc:
        found.append(str(exc))
    return found


Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: tuple[str, ...]) -> Stamp:
    found: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: a Kubernetes secret swaps its ..data link
        except OSError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(found)


class ServerTLS:
    """The context a server listens with, switching each handshake to the newest certificate."""

    def __init__(self, tls: TLSConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = tls
        self.clock = clock
        self.paths = (tls.cert, tls.key)
        self.stamp = _stamp(self.paths)
        self.context = server_context(tls)  # the listening one: it holds the callback
        self.current = self.context
        self.context.sni_callback = self._hello
        self.next_check = clock() + RELOAD_CHECK_INTERVAL
        self.forced = False
        self.reloads = 0

    def request_reload(self) -> None:
        """Look at the files at the next handshake, whatever the interval (SIGHUP). Only sets
        a flag, so it is safe in a signal handler."""
        self.forced = True

    def maybe_reload(self) -> bool:
        """Reload when due and the files changed; whether a new certificate is now in use."""
        now = self.clock()
        if not self.forced and now < self.next_check:
            return False
        forced, self.forced = self.forced, False
        self.next_check = now + RELOAD_CHECK_INTERVAL
        stamp = _stamp(self.paths)
        if stamp == self.stamp and not forced:
            return False
        self.stamp = stamp
        try:
            ctx = server_context(self.config)
        except TLSFileError as exc:
            log.error("TLS certificate not reloaded, the one loaded before is still served: %s", exc)
            return False
        self.current = ctx  # only the listening context's callback runs: this one needs none
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.config.cert)
        return True

    def _hello(self, conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        """OpenSSL's servername callback: must never raise, or the handshake fails."""
        try:
            self.maybe_reload()
            if conn.context is not self.current:
                conn.context = self.current
        except Exception:
            log.exception("TLS certificate reload failed; serving the one loaded before")
