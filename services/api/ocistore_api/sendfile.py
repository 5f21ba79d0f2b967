"""Pulls sent from file to socket by the kernel (`sendfile`), under uvicorn.

A pull through ASGI copies every byte into Python, through the event loop and back out: most of
a pull's CPU. On a plain-TCP connection the protocol (`connections.GuardedProtocol`) offers the
app an ASGI extension of ours, `ocistore.sendfile`; the blob route then sends the response
head as usual and, instead of body messages, one message carrying an open descriptor, an
offset and a count. The protocol writes it with `os.sendfile` on a duplicate of the socket's
descriptor, in a thread that waits for the socket with `poll` when it is full, while uvicorn
writes nothing else to that connection; then the response ends as any other and the
connection goes on (keep-alive, pipelining).

Why a descriptor and not ASGI's `pathsend` (a path): the route opens the blob before the head
goes out, so a blob GC removes meanwhile is still sent whole (an open file keeps its bytes),
and a blob that is already gone answers 404, not a truncated body. The duplicate descriptor
keeps the socket alive for the thread even if the loop closes its own (a client reset), so
the thread can never write into a connection that reused the number. A client that reads
nothing for the write timeout is cut, as one that stops reading a streamed body is.

TLS connections (the bytes must be encrypted in Python) and stores on S3 (no local file) go
on streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

SENDFILE = "ocistore.sendfile"
# At most this much per sendfile call, so a stop request is seen between calls.
STEP = 8 << 20
POLL_MS = 100
# How far ahead of the socket the file is asked for (POSIX_FADV_WILLNEED), again each time the
# socket has taken half of it. A blob pushed a moment ago is no longer in the page cache (the
# local driver drops what it wrote, see storage/writebehind.py). Linux reads only the device's
# read-ahead size (read_ahead_kb) of such a request, so the advice is a head start that the
# kernel's own read-ahead of the sendfile carries on. Measured on 256 MiB blobs just pushed
# (read_ahead_kb 8192): 755-843 MB/s without the advice, 872-909 MB/s with it; asking for all
# of the window, 1 MiB per call, cost more CPU (0.30-0.36 against 0.19-0.27 s/GB) for no more.
READ_AHEAD = 32 << 20


class _ClientGone(Exception):
    """The client closed, reset, or read nothing for the write timeout."""


def _pump(sock: int, fd: int, offset: int, count: int, write_timeout: float, stop: threading.Event) -> None:
    """Send `count` bytes of `fd` from `offset` to the (non-blocking) socket `sock`."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    idle = 0.0
    asked = offset  # the file is asked for up to here
    end = offset + count
    while count > 0:
        if asked < end and asked - offset < READ_AHEAD // 2:
            length = min(READ_AHEAD, end - asked)
            with contextlib.suppress(OSError):  # advice: a filesystem may not take it
                os.posix_fadvise(fd, asked, length, os.POSIX_FADV_WILLNEED)
            asked += length
        if stop.is_set():
            raise _ClientGone("the connection closed")
        try:
            sent = os.sendfile(sock, fd, offset, min(count, STEP))
        except BlockingIOError:
            if not poller.poll(POLL_MS):
                idle += POLL_MS / 1000
                if idle >= write_timeout:
                    raise _ClientGone(f"client read nothing for {write_timeout:g}s") from None
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClientGone(str(exc)) from None
        if sent == 0:
            raise OSError(f"the file ended {count} bytes early")
        offset += sent
        count -= sent
        idle = 0.0


def offer(protocol: Any, write_timeout: float) -> None:
    """Called once a request's head is parsed: offer the extension on plain TCP, and send a
    zero-copy message through the socket, then end the response the usual way."""
    cycle = protocol.cycle
    transport = protocol.transport
    if cycle is None or transport.get_extra_info("sslcontext") is not None:
        return
    cycle.scope["extensions"] = {**cycle.scope.get("extensions", {}), SENDFILE: {}}
    send_usual = cycle.send

    async def send(message: Message) -> None:
        if message["type"] != SENDFILE:
            await send_usual(message)
            return
        count = int(message["count"])
        if cycle.disconnected:
            return
        try:
            await _send(transport, message["fd"], int(message["offset"]), count, write_timeout)
        except _ClientGone as exc:
            if "read nothing" in str(exc):
                protocol.pool.warn("write-timeout", str(exc))
            transport.abort()
            cycle.disconnected = True  # the app's further sends are dropped, as for a hang-up
            return
        cycle.expected_content_length -= count
        await send_usual({"type": "http.response.body", "body": b"", "more_body": False})

    cycle.send = send


async def _send(transport: asyncio.Transport, fd: int, offset: int, count: int, write_timeout: float) -> None:
    # The head went to uvloop's buffer: it must be on the wire before the body goes after it.
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise _ClientGone("the connection closed")
        await asyncio.sleep(0.0005)
    if transport.is_closing():
        raise _ClientGone("the connection closed")
    sock = os.dup(transport.get_extra_info("socket").fileno())
    stop = threading.Event()
    pumping = asyncio.ensure_future(asyncio.to_thread(_pump, sock, fd, offset, count, write_timeout, stop))
    try:
        await asyncio.shield(pumping)
    except asyncio.CancelledError:
        stop.set()  # the thread stops at its next step: the descriptors outlive it
        await asyncio.wait([pumping])
        raise
    finally:
        os.close(sock)


def offered(scope: Scope) -> bool:
    """Whether this request's connection takes a zero-copy body."""
    return SENDFILE in scope.get("extensions", {})


class ZeroCopyResponse(Response):
    """`count` bytes of the open file `fd` from `offset`, sent by the connection with sendfile
    (only where `offered`); the descriptor is closed when the send is over."""

    def __init__(self, fd: int, offset: int, count: int, status_code: int, headers: Mapping[str, str]) -> None:
        super().__init__(status_code=status_code, headers=headers)
        self.fd, self.offset, self.count = fd, offset, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": SENDFILE, "fd": self.fd, "offset": self.offset, "count": self.count})
        finally:
            os.close(self.fd)
