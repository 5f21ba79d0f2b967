"""The connection limits uvicorn lacks, as a subclass of its httptools protocol.

uvicorn (0.55) bounds neither the size of a request head nor the time it may take, and a
connection that never sends a byte stays open for ever.  A few hundred idle sockets then
use up the process's file descriptors; past that, libuv's accept drops every pending
connection, so no client gets in.  A 48 MiB header is concatenated piece by piece inside
httptools and stalls the event loop.  This module adds, per connection:

- a cap on the request head (bytes and header lines), checked *before* bytes reach the
  parser: 431 in the spec's error envelope, then a lingering close;
- a header timeout (accept, or a request's first byte, to the end of its headers);
- a body inactivity timeout: the request is aborted as if the client had hung up, so an
  upload session keeps what arrived (the app sees `http.disconnect`);
- a write timeout: a response the client stops reading is aborted;
- keep-alive limits (idle timeout, requests per connection);

and, per server, a cap on live connections that evicts the oldest idle ones first
(lingering, then between requests, then part-way through a head) and answers 503 when all
are busy.  The cap is kept well below the file-descriptor limit (see `fd_limit`).

It relies on uvicorn internals (`cycle`, `flow`, `pipeline`, `timeout_keep_alive`), pinned
by pyproject.toml's range and exercised by tests/api/test_connection_limits.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ocistore.config import HTTPConfig
from ocistore.logs import Sparse
from ocistore.tls_identity import ClientCertificate

from . import request_body, sendfile
from .tls import CLIENT_CERTIFICATE

log = logging.getLogger("ocistore.http")

# After a refusal, what the client still sends is read and dropped until it pauses this
# long (or at most LINGER_MAX), as nginx's lingering_close does: closing with unread bytes
# would reset the connection, and the client would lose the answer.
LINGER_IDLE = 1.0
LINGER_MAX = 5.0
FD_CAP = 1 << 20              # when the hard limit is unlimited
MAX_AUTO_CONNECTIONS = 10_000


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    max_header_fields: int
    header_timeout: float
    body_idle_timeout: float
    write_timeout: float
    keep_alive_timeout: float
    max_requests: int
    max_connections: int

    @classmethod
    def from_config(cls, http: HTTPConfig, fd_limit: int) -> Limits:
        """Half the descriptors for connections: the rest covers storage, Redis and logs, and
        a burst of accepts (evicted connections free their descriptor one loop turn later)."""
        ceiling = max(1, fd_limit // 2)
        cap = http.max_connections or min(MAX_AUTO_CONNECTIONS, ceiling)
        if cap > ceiling:
            log.warning("http.maxConnections %d lowered to %d: half of the file descriptor limit %d",
                        cap, ceiling, fd_limit)
            cap = ceiling
        return cls(http.max_header_bytes, http.max_header_fields, http.header_timeout, http.body_idle_timeout,
                   http.write_timeout, http.keep_alive_timeout, http.max_requests_per_connection, cap)


def fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_CAP if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file descriptor limit from %d to %d: %s", soft, target, exc)
    return soft


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"errors": [{"code": "UNKNOWN", "message": message, "detail": None}]}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            "docker-distribution-api-version: registry/2.0\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class _TooManyFields(Exception):
    """Raised inside the parser's on_header: stops parsing at once."""


IDLE, READING, BUSY, LINGERING = "idle", "reading", "busy", "lingering"
EVICTION_ORDER = (LINGERING, IDLE, READING)


class Pool:
    """The server's live connections by state, each state oldest first, for the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.by_state: dict[str, OrderedDict[GuardedProtocol, None]] = {
            s: OrderedDict() for s in (IDLE, READING, BUSY, LINGERING)}
        self.state: dict[GuardedProtocol, str] = {}
        self._say = Sparse(10.0)  # a flood of refusals must not become a flood of log lines

    def __len__(self) -> int:
        return len(self.state)

    def warn(self, kind: str, message: str) -> None:
        if self._say.due(kind):
            n = self._say.missed(kind)
            log.warning("%s%s", message, f" ({n + 1} times since the last such warning)" if n else "")

    def admit(self, conn: GuardedProtocol) -> bool:
        """Make room by evicting the oldest evictable connection; False when all are busy."""
        while len(self.state) >= self.cap:
            victim = next((c for s in EVICTION_ORDER for c in self.by_state[s]), None)
            if victim is None:
                self.warn("full", f"{self.cap} connections, all busy: answering 503")
                return False
            self.warn("evict", f"{self.cap} connections: closing the oldest idle ones")
            self.forget(victim)
            victim.transport.close()
        self.set(conn, IDLE)
        return True

    def set(self, conn: GuardedProtocol, state: str) -> None:
        old = self.state.get(conn)
        if old == state:
            return
        if old is not None:
            del self.by_state[old][conn]
        self.state[conn] = state
        self.by_state[state][conn] = None

    def forget(self, conn: GuardedProtocol) -> None:
        old = self.state.pop(conn, None)
        if old is not None:
            del self.by_state[old][conn]


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of one server (see `protocol_class`)."""

    limits: ClassVar[Limits]
    pool: ClassVar[Pool]

    def __init__(self, config: UvicornConfig, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn arms this after each response; a float here allows sub-second values.
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self.in_head = True          # bytes now arriving belong to a request head
        self.in_body = False
        self.head_bytes = 0
        self.head_fields = 0
        self.requests = 0
        self.last_body = 0.0
        self.lingering = False
        self.linger_start = self.linger_last = 0.0
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.client_certificate: ClientCertificate | None = None
        self.body = request_body.BodyPieces()  # the current request's (request_body.install)

    # --- connection life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.scheme == "https":  # made after the handshake: a certificate given is verified
            self.client_certificate = ClientCertificate.from_peercert(transport.get_extra_info("peercert"))
        if not self.pool.admit(self):
            self.transport.write(_refusal(503, "Service Unavailable", "too many connections; retry later"))
            self.transport.close()
            return
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        for timer in (self.header_timer, self.body_timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = self.write_timer = None
        super().connection_lost(exc)

    # --- reading: the head is counted before the parser sees it

    def data_received(self, data: bytes) -> None:
        """uvicorn's data_received, feeding the parser at most the head bytes still allowed."""
        if self.lingering:
            self.linger_last = self.loop.time()
            return
        self._unset_keepalive_if_required()
        view = memoryview(data)
        while view and not self.transport.is_closing() and not self.lingering:
            if self.in_head:
                room = self.limits.max_header_bytes - self.head_bytes
                if room <= 0:
                    self._refuse(431, "Request Header Fields Too Large",
                                 f"request head larger than {self.limits.max_header_bytes} bytes")
                    return
                piece, view = view[:room], view[room:]
                self.head_bytes += len(piece)
            else:
                piece, view = view, view[:0]
                self.last_body = self.loop.time()
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _TooManyFields):
                    self._refuse(431, "Request Header Fields Too Large",
                                 f"more than {self.limits.max_header_fields} header fields")
                    return
                # In the spec's envelope like every other error (uvicorn's own is plain text).
                # A TLS ClientHello (a handshake record, 0x16 0x03) is a client probing for HTTPS,
                # as skopeo does before plain HTTP: refused the same, but no warning per pull.
                probe = self.head_bytes == len(piece) and bytes(piece[:2]) == b"\x16\x03"
                self._refuse(400, "Bad Request", "malformed HTTP request: it cannot be parsed", quiet=probe)
                return
            except httptools.HttpParserUpgrade:  # the server runs with ws="none": served as plain HTTP
                self._unsupported_upgrade_warning()
                return
        # Timers only for a head or body that spans packets: a request that arrives whole
        # (most of them) costs none.
        if self.transport.is_closing() or self.lingering:
            return
        if self.in_head and self.head_bytes and self.header_timer is None:
            self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)
        if self.in_body and self.body_timer is None:
            self.last_body = self.loop.time()
            self.body_timer = self.loop.call_later(self.limits.body_idle_timeout, self._body_check)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.scheme == "https":
            self.scope["state"][CLIENT_CERTIFICATE] = self.client_certificate
        self.head_fields = 0
        if not self._serving():
            self.pool.set(self, READING)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_fields += 1
        if self.head_fields > self.limits.max_header_fields:
            raise _TooManyFields
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self.in_head, self.in_body = False, True
        self.requests += 1
        self.pool.set(self, BUSY)
        super().on_headers_complete()
        if self.requests >= self.limits.max_requests and self.cycle is not None:
            self.cycle.keep_alive = False
        if self.cycle is not None:
            self.body = request_body.install(self.cycle)
        sendfile.offer(self, self.limits.write_timeout)

    def on_body(self, body: bytes) -> None:
        """uvicorn's, keeping the piece uncopied (request_body.py)."""
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        if self.body.add(body):
            self.flow.pause_reading()
        self.cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.in_body = True, False
        self.head_bytes = 0
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.lingering and not self._serving():
            self.pool.set(self, READING if self.in_head and self.head_bytes else IDLE)

    def _serving(self) -> bool:
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    # --- timers

    def _header_timed_out(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or self.lingering or not self.in_head:
            return
        if self._serving():  # a pipelined head waits for us, not for the client
            self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)
            return
        self.pool.warn("header-timeout", f"request head not complete within {self.limits.header_timeout:g}s")
        if self.head_bytes:
            self._refuse(408, "Request Timeout", "request head not complete in time")
        else:
            self.transport.close()

    def _body_check(self) -> None:
        """Runs every body_idle_timeout at most: cheaper than a timer per chunk of a big upload."""
        self.body_timer = None
        if self.transport.is_closing() or not self.in_body:
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self.last_body = now  # the app is not reading yet: the client is not the one idle
        idle = now - self.last_body
        if idle < self.limits.body_idle_timeout:
            self.body_timer = self.loop.call_later(self.limits.body_idle_timeout - idle, self._body_check)
            return
        self.pool.warn("body-timeout", f"no request body bytes for {self.limits.body_idle_timeout:g}s")
        if cycle is not None and not cycle.response_started:
            self.transport.write(_refusal(408, "Request Timeout", "request body stalled"))
        if cycle is not None:  # what connection_lost does, now: the app must not answer any more
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.limits.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _write_timed_out(self) -> None:
        self.write_timer = None
        if self.flow.write_paused and not self.transport.is_closing():
            self.pool.warn("write-timeout", f"client read nothing for {self.limits.write_timeout:g}s")
            self.transport.abort()  # close() would wait for a buffer the client never drains

    # --- refusing

    def _refuse(self, status: int, reason: str, message: str, quiet: bool = False) -> None:
        """Answer and close, reading (and dropping) what the client still sends for a moment,
        so the answer is not lost to a reset while its request is still on the wire."""
        self.lingering = True
        for timer in (self.header_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = None
        if quiet:
            log.debug("refused a TLS handshake on the plain-HTTP port: %d %s", status, message)
        else:
            self.pool.warn(f"refuse-{status}", f"refused a request: {status} {message}")
        if self._serving():  # an answer is being written: end the connection after it instead
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self.pool.set(self, LINGERING)
        self.transport.write(_refusal(status, reason, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.linger_start = self.linger_last = self.loop.time()
            self.loop.call_later(LINGER_IDLE, self._linger_check)
        else:
            self.transport.close()

    def _linger_check(self) -> None:
        if self.transport.is_closing():
            return
        now = self.loop.time()
        quiet = now - self.linger_last
        if quiet >= LINGER_IDLE or now - self.linger_start >= LINGER_MAX:
            self.transport.close()
        else:
            self.loop.call_later(min(LINGER_IDLE - quiet, LINGER_MAX - (now - self.linger_start)),
                                 self._linger_check)


def protocol_class(limits: Limits) -> type[GuardedProtocol]:
    """A protocol class bound to one server's limits and connection pool, for uvicorn's `http=`."""

    class OcistoreHttpProtocol(GuardedProtocol):
        pass

    OcistoreHttpProtocol.limits = limits
    OcistoreHttpProtocol.pool = Pool(limits.max_connections)
    return OcistoreHttpProtocol
