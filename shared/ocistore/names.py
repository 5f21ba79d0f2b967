"""Repository name and tag grammar from the Distribution Spec.

Checked on every request before any path is built, so no name can reach outside a
store's root: the grammar admits neither `.`, `..`, empty components nor any byte
outside `[a-z0-9._/-]`.
"""

from __future__ import annotations

import re

from .errors import ErrorCode, RegistryError

# Always fullmatch: `re.match` with `$` also matches before a trailing newline, which let
# `?tag=latest%0A` store the tag "latest\n".
_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255
# A repository is a directory holding a layout, and layouts nest: a name component equal to
# one of the layout's own entries would put a repository inside another's blobs, or a
# directory where another's index.json or blob must be.
RESERVED_COMPONENTS = frozenset({"blobs", "index.json", "oci-layout"})


def name_fault(name: str) -> str | None:
    """Why `name` cannot be a repository, or None when it can."""
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if _NAME_RE.fullmatch(name) is None:
        return "not of the form [a-z0-9]+ components joined by '.', '_', '__' or '-', separated by '/'"
    reserved = RESERVED_COMPONENTS.intersection(name.split("/"))
    if reserved:
        return (f"the component {min(reserved)!r} is reserved: it names a part of the OCI layout "
                "each repository is stored as")
    return None


def is_valid_name(name: str) -> bool:
    return name_fault(name) is None


def check_name(name: str) -> str:
    fault = name_fault(name)
    if fault is not None:
        raise RegistryError(ErrorCode.NAME_INVALID, {"name": name, "reason": fault},
                            message=f"invalid repository name: {fault}")
    return name


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None
