"""Repository globs as zot matches them (github.com/bmatcuk/doublestar/v4 `Match`).

zot's `retention.policies[].repositories` and `accessControl.repositories` are doublestar
patterns, so a config moved from zot must select the same repositories here:

- `*` and `?` stay within one path component, `[...]` is a class (`[!...]` or `[^...]`
  negates), `{a,b}` an alternation, `\\` escapes the next character;
- `**` as a whole component matches zero or more components, so `a/**` matches `a` too.
"""

from __future__ import annotations

import functools
import re


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the class starting at `pattern[i] == "["`, and the index after it."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    if negate:
        j += 1
    body = []
    while j < len(pattern) and pattern[j] != "]":
        if pattern[j] == "\\" and j + 1 < len(pattern):
            j += 1
        body.append(pattern[j] if pattern[j] == "-" else re.escape(pattern[j]))
        j += 1
    if j >= len(pattern):
        raise ValueError(f"unterminated [ in {pattern!r}")
    inner = "".join(body)
    # A class never matches the separator, as doublestar's does not.
    return (f"[^/{inner}]" if negate else f"(?!/)[{inner}]"), j + 1


def _alternatives(pattern: str, i: int) -> tuple[list[str], int]:
    """The comma-separated parts of the `{...}` starting at `pattern[i]`, and the index after it."""
    depth, j, start, parts = 0, i, i + 1, []
    while j < len(pattern):
        ch = pattern[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                parts.append(pattern[start:j])
                return parts, j + 1
        elif ch == "," and depth == 1:
            parts.append(pattern[start:j])
            start = j + 1
        j += 1
    raise ValueError(f"unterminated {{ in {pattern!r}")


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*" and pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/") \
                and (i + 2 == n or pattern[i + 2] == "/"):
            if i + 2 == n:
                if out and out[-1] == "/":
                    out[-1] = "(?:/.*)?"   # `a/**` is `a` and everything under it
                else:
                    out.append(".*")
                i += 2
            else:
                out.append("(?:.*/)?")     # `**/` is zero or more whole components
                i += 3
        elif ch == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            regex, i = _class(pattern, i)
            out.append(regex)
        elif ch == "{":
            parts, i = _alternatives(pattern, i)
            out.append("(?:" + "|".join(_translate(p) for p in parts) + ")")
        elif ch == "\\":
            if i + 1 >= n:
                raise ValueError(f"{pattern!r} ends in an escape")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "/":
            out.append("/")
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The pattern as an anchored regex; ValueError when it is no valid glob."""
    if not pattern:
        raise ValueError("an empty glob matches nothing")
    return re.compile(_translate(pattern))


def glob_match(pattern: str, name: str) -> bool:
    return compile_glob(pattern).fullmatch(name) is not None
