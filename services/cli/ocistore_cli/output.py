"""How a command prints: lines of text for people, or one JSON document for programs.

Text gives sizes in IEC units (`ocistore.units.format_bytes`); JSON gives them as exact
integers of bytes.  With `--json` stdout carries the document and nothing else: a progress
bar is never drawn, and notes go to stderr in both modes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tqdm import tqdm

from .progress import Progress


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.terminal = sys.stderr.isatty()

    def line(self, text: str) -> None:
        """A line of the text output (none with --json), printed above any progress bar."""
        if self.as_json:
            return
        if self.terminal:
            tqdm.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def document(self, doc: dict[str, Any]) -> None:
        """The --json output (none without it)."""
        if self.as_json:
            json.dump(doc, sys.stdout, indent=2, sort_keys=False)
            sys.stdout.write("\n")

    def progress(self, label: str, unit: str, total: int | None = None) -> Progress:
        return Progress(label, unit, enabled=self.terminal and not self.as_json, total=total)


def note(text: str) -> None:
    """A remark that is not the command's output: stderr, whatever the mode."""
    print(text, file=sys.stderr)


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"
