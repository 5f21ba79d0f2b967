"""A progress line on a terminal (and nothing when output goes to a file or pipe)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.count = 0
        self.started = time.monotonic()
        self.enabled = sys.stderr.isatty()

    def step(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        if self.total:
            width = 30
            filled = int(width * min(self.count / self.total, 1.0))
            bar = "#" * filled + "-" * (width - filled)
            line = f"{self.label} [{bar}] {self.count}/{self.total}{self.unit}"
        else:
            line = f"{self.label} {self.count}{self.unit}"
        sys.stderr.write(f"\r{line} ({self.count / elapsed:.0f}{self.unit}/s)\x1b[K")
        sys.stderr.flush()

    def print(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
        print(text)

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
