"""HTTP `Range` on blob GET: one range of `bytes=a-b`, `a-` or `-n`."""

from __future__ import annotations

import re

from ocistore.errors import ErrorCode, RegistryError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive), or None for the whole blob; 416 when unsatisfiable.

    A header this does not understand (several ranges, other units) is ignored, as
    RFC 9110 allows, and the whole blob is sent.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(ErrorCode.RANGE_INVALID, {"size": size}, headers={"Content-Range": f"bytes */{size}"})
