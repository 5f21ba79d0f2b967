"""The one strict reader of JSON documents that come from clients or from storage.

Python's `json` recurses once per nesting level (a thousand nested arrays raise
RecursionError, which is no client error and used to crash a request, GC and scrub alike),
guesses UTF-16/32 from the first bytes, accepts a BOM-less or BOM-prefixed body alike,
takes `NaN`, keeps the last of duplicate keys and hands back lone surrogates from `\\ud800`
escapes.  Go's `encoding/json`, which every client and peer registry uses, differs on
most of these, so a document both accept must not be read in two ways.  Everything here
is refused with a `DocumentError` that says why, before any recursion can start.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40  # an int64 has 19 digits; more is no size, and slow to convert
# A string (escapes included) or one structural character: what the depth scan looks at.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_BOM = b"\xef\xbb\xbf"


class DocumentError(ValueError):
    """A document that is not strict JSON; `reason` says what is wrong, for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _depth_fault(text: str, max_depth: int) -> str | None:
    """Why `text` nests too deep, without recursing (strings are skipped whole)."""
    if text.count("[") + text.count("{") <= max_depth:
        return None  # cannot nest deeper than it has openers: the common, cheap case
    depth = 0
    for m in _TOKEN.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
        elif c in "]}":
            depth -= 1
    return None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DocumentError(f"duplicate key {key!r}")
            seen.add(key)
    return doc


def _constant(name: str) -> Any:
    raise DocumentError(f"{name} is not a JSON number")


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise DocumentError(f"number of {len(text)} characters")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise DocumentError(f"number of {len(text)} characters")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise DocumentError(f"number {text} is out of range")
    return value


def loads(data: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The document in `data`, strictly: UTF-8 without BOM, bounded in size and depth,
    no duplicate keys, no NaN/Infinity, no lone surrogates.  Raises DocumentError."""
    if len(data) > max_bytes:
        raise DocumentError(f"{len(data)} bytes, more than the {max_bytes} allowed")
    if data.startswith(_BOM):
        raise DocumentError("starts with a byte order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not valid UTF-8 at byte {exc.start}") from None
    fault = _depth_fault(text, max_depth)
    if fault is not None:
        raise DocumentError(fault)
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant,
                         parse_int=_number, parse_float=_float)
    except DocumentError:
        raise
    except (ValueError, RecursionError) as exc:
        # RecursionError cannot happen past the depth scan; kept so no bound can be missed.
        raise DocumentError(f"not valid JSON: {exc}") from None
    if "\\u" in text:
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DocumentError("a \\u escape is a lone surrogate, not a character") from None
    return doc
