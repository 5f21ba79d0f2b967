"""Byte sizes as every command prints them: IEC binary units (1 KiB = 1024 bytes), and rates
given on a command line in MiB/s.

Text output goes through `format_bytes`; JSON output carries exact integers instead.
"""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(n: int | float) -> str:
    """`512 B`, `1.5 KiB`, `12.3 MiB`, …: exact below 1 KiB, one decimal above."""
    if abs(n) < KiB:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= KiB
        if round(abs(value), 1) < KiB or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def parse_rate(text: str) -> float | None:
    """A rate limit written in MiB/s, as bytes a second; `0` means no limit (None).

    ValueError when it is not a number or is negative.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of MiB/s") from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(f"{text!r}: a rate must be a finite number of MiB/s, 0 for no limit")
    return value * MiB if value > 0 else None
