"""HTTP `Range` on blob GET: one range of `bytes=a-b`, `a-` or `-n`."""

from __future__ import annotations

import re

from ocistore.errors import ErrorCode, RegistryError
from ocistore.wire import MAX_DIGITS, MAX_WIRE_INT, wire_int

# ASCII digits only: `\d` would take any Unicode digit.
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def _position(digits: str) -> int:
    """A byte position (ASCII digits); one past any int64 is past the end of every blob."""
    value = wire_int(digits, max_digits=MAX_DIGITS)
    return MAX_WIRE_INT if value is None else value


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive), or None for the whole blob; 416 when unsatisfiable.

    A header this does not understand (several ranges, other units) is ignored, as
    RFC 9110 allows, and the whole blob is sent.  Positions of any length are read as
    RFC 9110 means them (an end or a suffix past the blob's size is clamped to it, a start
    past it is unsatisfiable) without converting more than 19 digits.
    """
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size - 1
    start = _position(first)
    end = _position(last) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(ErrorCode.RANGE_INVALID, {"size": size}, headers={"Content-Range": f"bytes */{size}"})
