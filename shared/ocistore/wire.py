"""Integers on the wire: ASCII digits, bounded in length, or nothing.

`str.isdigit()` and a regex's `\\d` accept every Unicode digit (`²`, `٣`), which `int()`
then refuses or converts; and `int()` of a 5000-digit string raises, past Python's limit
on conversions.  Both used to end as a 500.  Every integer a request carries (Range,
Content-Range, Content-Length, `n`) goes through `wire_int`, so a bad one is the caller's
400 or 416 with the spec's code, decided where the number is read.
"""

from __future__ import annotations

MAX_DIGITS = 19  # an int64, what Go clients and peers can send at all
MAX_WIRE_INT = (1 << 63) - 1


def wire_int(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """The value of `text` when it is 1 to `max_digits` ASCII digits within int64; else None."""
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_WIRE_INT else None


def is_ascii_digits(text: str) -> bool:
    """Digits as a grammar means them (`[0-9]+`), whatever their number."""
    return bool(text) and text.isascii() and text.isdigit()
