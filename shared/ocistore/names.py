"""Repository name and tag grammar from the Distribution Spec.

Checked on every request before any path is built, so no name can reach outside a
store's root: the grammar admits neither `.`, `..`, empty components nor any byte
outside `[a-z0-9._/-]`.
"""

from __future__ import annotations

import re

from .errors import ErrorCode, RegistryError

_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME_RE.match(name) is not None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, f"invalid repository name {name!r}")
    return name


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None
