"""A progress bar on stderr (tqdm): total, percent, rate and ETA, once the total is known.

Shown only on a terminal and never with `--json`; otherwise every call does nothing.  A
walk tells the total when it has listed what it will go through (`set_total`), then
advances the bar as it goes.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from tqdm import tqdm

from ocistore.units import format_bytes


class _BytesBar(tqdm):  # type: ignore[type-arg]
    """Counts bytes, and shows them (done, total, rate) in the IEC units of all other output."""

    @property
    def format_dict(self) -> dict[str, Any]:
        d = dict(super().format_dict)
        rate = d.get("rate")
        return {**d, "n_iec": format_bytes(d["n"]), "total_iec": format_bytes(d["total"] or 0),
                "rate_iec": f"{format_bytes(rate)}/s" if rate else "?/s"}


_BYTES_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_iec}/{total_iec} [{elapsed}<{remaining}, {rate_iec}]"


class Progress:
    def __init__(self, label: str, unit: str, *, enabled: bool, total: int | None = None) -> None:
        """`unit` "B" counts bytes; anything else counts items (" repos", " blobs")."""
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self._bar: tqdm[Any] | None = None
        if total is not None:
            self.set_total(total)

    def set_total(self, total: int) -> None:
        if not self.enabled:
            return
        self.close()
        options: dict[str, Any] = {"desc": self.label, "total": total, "file": sys.stderr, "leave": False,
                                   "dynamic_ncols": True}
        if self.unit == "B":
            self._bar = _BytesBar(bar_format=_BYTES_FORMAT, **options)
        else:
            self._bar = tqdm(unit=self.unit, **options)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
