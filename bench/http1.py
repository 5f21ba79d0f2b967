"""A lean HTTP/1.1 keep-alive client on asyncio protocols, for the benchmark only.

Why not aiohttp: on a 2-core machine the client shares the CPUs with the server it measures, and
aiohttp spends about twice the CPU per request of this client (measured here: ~170-190 µs against
~90 µs for a 4 KiB GET while the server saturates the other core). ocistore answers a HEAD in about
60 µs of CPU, so with aiohttp its small-operation figures would mostly measure the client.

This client does only what the benchmark needs: one request at a time per connection (no
pipelining), bodies from bytes or streamed pieces with write flow control, answers framed by
Content-Length, chunked encoding or connection close, and large answers handed piece by piece to a
sink so a 256 MiB pull is hashed as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

REQUEST_TIMEOUT = 120.0
_WRITE_HIGH = 4 << 20
_WRITE_LOW = 1 << 20
_NO_CONTENT_LENGTH = {"GET", "HEAD", "DELETE"}

Sink = Callable[[bytes], None]


class HTTPError(Exception):
    """The connection failed or the answer could not be framed."""


@dataclass(frozen=True)
class Response:
    """A complete answer; header names are lower-case, repeated headers joined with ', '."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Streamed:
    """A request body of known `length` sent piece by piece, never held whole."""

    pieces: Iterable[bytes]
    length: int


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time, parsing answers as bytes arrive."""

    def __init__(self) -> None:
        """An unconnected protocol; the event loop calls `connection_made`."""
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._sink: Sink | None = None
        self._head_only = False
        self._reset()

    def _reset(self) -> None:
        """Ready the parser for the next answer's status line."""
        self._mode = "head"
        self._status = 0
        self._headers: dict[str, str] = {}
        self._parts: list[bytes] = []
        self._remaining = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; allow a few MiB in flight so streamed uploads never stall on a bubble."""
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self._transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)

    def pause_writing(self) -> None:
        """The send buffer is full: streamed uploads wait."""
        self._writable.clear()

    def resume_writing(self) -> None:
        """The send buffer drained: streamed uploads go on."""
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        """Finish an answer framed by close, fail any other pending request, and never reuse this."""
        self.closed = True
        self._writable.set()
        if self._waiter is not None and not self._waiter.done():
            if self._mode == "eof":
                self._finish()
            else:
                self._fail(f"connection lost while reading the answer ({exc or 'closed by server'})")

    def close(self) -> None:
        """Drop the connection (after an error, or when the pool shuts)."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def send(self, head: bytes, body: bytes | Streamed, head_only: bool, sink: Sink | None) -> Response:
        """Write one request and wait for its whole answer."""
        assert self._transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_only, self._sink = head_only, sink
        try:
            if isinstance(body, bytes):
                self._transport.writelines([head, body])
                return await self._waiter
            self._transport.write(head)
            sent_all = await self._stream(body)
            response = await self._waiter
            if not sent_all:  # the server answered before the body ended: the framing is lost
                self.close()
            return response
        finally:
            self._waiter = None

    async def _stream(self, body: Streamed) -> bool:
        """Write the pieces, waiting whenever the send buffer is full; stop if the answer came early.

        Returns whether every piece was written.
        """
        assert self._transport is not None and self._waiter is not None
        for piece in body.pieces:
            if self._waiter.done() or self.closed:
                return False
            self._transport.write(piece)
            if not self._writable.is_set():
                await self._writable.wait()
        return True

    def data_received(self, data: bytes) -> None:
        """Feed bytes to the parser: status line and headers first, then the body in its framing."""
        if self._waiter is None or self._waiter.done():
            self._fail("bytes received with no request outstanding")
            return
        if self._mode != "head":
            self._body(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end >= 0:
            rest = bytes(self._buffer[end + 4:])
            self._parse_head(bytes(self._buffer[:end]))
            self._buffer.clear()
            if self._mode == "done":
                self._finish()
            elif rest:
                self._body(rest)

    def _parse_head(self, head: bytes) -> None:
        """Read the status line and headers, then pick the body framing (RFC 9112 section 6.3)."""
        lines = head.decode("latin-1").split("\r\n")
        try:
            self._status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(f"malformed status line {lines[0]!r}")
            return
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key, value = name.strip().lower(), value.strip()
            self._headers[key] = f"{self._headers[key]}, {value}" if key in self._headers else value
        if self._head_only or self._status in (204, 304) or self._status < 200:
            self._mode = "done"
        elif "chunked" in self._headers.get("transfer-encoding", "").lower():
            self._mode = "chunked"
        elif "content-length" in self._headers:
            self._remaining = int(self._headers["content-length"])
            self._mode = "length" if self._remaining else "done"
        else:
            self._mode = "eof"

    def _body(self, data: bytes) -> None:
        """Take body bytes according to the framing chosen by `_parse_head`."""
        if self._mode == "length":
            if len(data) > self._remaining:
                self._fail(f"{len(data) - self._remaining} bytes past Content-Length")
                return
            self._deliver(data)
            self._remaining -= len(data)
            if not self._remaining:
                self._finish()
        elif self._mode == "chunked":
            self._buffer += data
            self._chunks()
        elif self._mode == "eof":
            self._deliver(data)

    def _chunks(self) -> None:
        """Decode as many complete chunks as the buffer holds; each step consumes bytes or returns."""
        while self._waiter is not None and not self._waiter.done():
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._buffer[:line_end]).split(b";")[0], 16)
            if size == 0:  # last chunk; the benchmark's servers send no trailers
                if len(self._buffer) >= line_end + 4:
                    self._buffer.clear()
                    self._finish()
                return
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            self._deliver(bytes(self._buffer[line_end + 2:line_end + 2 + size]))
            del self._buffer[:line_end + 2 + size + 2]

    def _deliver(self, data: bytes) -> None:
        """Body bytes go to the sink if there is one, else are kept for the Response."""
        if self._sink is not None:
            self._sink(data)
        else:
            self._parts.append(data)

    def _finish(self) -> None:
        """Complete the pending request; a `Connection: close` answer retires the connection."""
        response = Response(self._status, self._headers, b"".join(self._parts))
        if "close" in self._headers.get("connection", "").lower():
            self.close()
        self._reset()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(response)

    def _fail(self, reason: str) -> None:
        """Fail the pending request and drop the connection: its framing can no longer be trusted."""
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HTTPError(reason))


class Client:
    """A pool of at most `size` keep-alive connections to one `http://host:port` server."""

    def __init__(self, base: str, size: int, login: str | None = None, spread: Sequence[str] = ()) -> None:
        """Connections are opened lazily, so the pool costs nothing until used. With `login`
        (an `Authorization` value), every request carries it, as a logged-in client's would.
        With `spread` (more servers of one registry: replicas), new connections go to `base`
        and each of them in turn, as a round-robin load balancer would place them."""
        self._servers = [_address(url) for url in (base, *spread)]
        self._turn = 0
        self._authority = urlsplit(base).netloc
        self._login = login
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Connection] = []

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes | Streamed = b"", sink: Sink | None = None) -> Response:
        """Send one request on a pooled connection and return the complete answer.

        `target` may be a path with query or an absolute URL (a Location); only its path and query
        are used, as every URL a registry hands out here points back to itself.
        """
        head = self._head(method, _path_and_query(target), headers or {}, body)
        async with self._slots:
            conn = await self._connection()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    response = await conn.send(head, body, method == "HEAD", sink)
            except BaseException:
                conn.close()
                raise
            if not conn.closed:
                self._idle.append(conn)
            return response

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def _connection(self) -> _Connection:
        """The most recently used live connection, or a new one (idle ones the server closed are dropped)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        host, port = self._servers[self._turn % len(self._servers)]
        self._turn += 1
        _, conn = await loop.create_connection(_Connection, host, port)
        return conn

    def _head(self, method: str, path: str, headers: dict[str, str], body: bytes | Streamed) -> bytes:
        """The request line and headers; Content-Length on every request that may carry a body."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._authority}"]
        if self._login is not None:
            lines.append(f"Authorization: {self._login}")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        length = len(body) if isinstance(body, bytes) else body.length
        if length or method not in _NO_CONTENT_LENGTH:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _address(base: str) -> tuple[str, int]:
    """Host and port of an `http://host:port` URL."""
    parts = urlsplit(base)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"{base}: only http://host:port is supported")
    return parts.hostname, parts.port


def _path_and_query(target: str) -> str:
    """Strip scheme and authority from an absolute URL, keeping the rest exactly as encoded."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
