"""Request bodies handed to the app in the pieces the parser cut, never copied on the way.

uvicorn's httptools protocol (0.55) gathers a request's body in a bytearray, which copies every
byte once, and hands the app `bytes()` of it, which copies it again: two memmoves of each byte
of a push on the event loop's thread, the thread a large push waits on (the hash and the disk
write run on others, see ocistore/registry/ingest.py). Here each piece the parser delivers is
kept as it is, and the app's next `receive` gets it as it is (several are joined only when they
arrived between two reads of the app). Flow control is uvicorn's: reading pauses past
HIGH_WATER_LIMIT bytes unread and resumes when the app reads.

The cycle's `receive` is replaced once its head is parsed, as `sendfile.offer` replaces `send`;
what it does besides the body (the interim 100 Continue, `http.disconnect` once the client is
gone or the answer sent) is uvicorn's, exercised by the API suite's tests of both.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT


class BodyPieces:
    """What arrived of one request's body and the app has not read yet."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def add(self, piece: bytes) -> bool:
        """Keep `piece`; whether reading should pause until the app has read."""
        self._pieces.append(piece)
        self._size += len(piece)
        return self._size > HIGH_WATER_LIMIT

    def take(self) -> bytes:
        pieces, self._pieces, self._size = self._pieces, [], 0
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def install(cycle: Any) -> BodyPieces:
    """Give `cycle` (uvicorn's RequestResponseCycle, its head just parsed) a `receive` that
    hands over the pieces the protocol adds to the returned holder."""
    body = BodyPieces()

    async def receive() -> Message:
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body.take(), "more_body": cycle.more_body}

    cycle.receive = receive
    return body
