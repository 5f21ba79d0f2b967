"""Parsing of `/v2/...` paths, on the raw (undecoded) path.

Working on the raw bytes means `%2F`, `%2e%2e` and friends never decode into a name:
the name grammar refuses `%`, so such a request is NAME_INVALID before any storage
path is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocistore.errors import ErrorCode, RegistryError
from ocistore.names import check_name

_ROUTE = re.compile(
    r"/v2/(?P<name>.+?)/(?:"
    r"blobs/uploads/(?P<upload>[^/]*)"
    r"|blobs/(?P<blob>[^/]+)"
    r"|manifests/(?P<manifest>[^/]+)"
    r"|(?P<tags>tags/list)"
    r"|referrers/(?P<subject>[^/]+)"
    r")"
)  # matched whole (fullmatch): `$` would also match before a trailing newline


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "upload", "blob", "manifest", "tags", "referrers"
    name: str
    arg: str


def parse_path(raw_path: str) -> Route:
    m = _ROUTE.fullmatch(raw_path)
    if m is None:
        raise RegistryError(ErrorCode.ENDPOINT_UNKNOWN, {"path": raw_path})
    name = check_name(m.group("name"))
    for kind, group in (("upload", "upload"), ("blob", "blob"), ("manifest", "manifest"),
                        ("referrers", "subject")):
        value = m.group(group)
        if value is not None:
            return Route(kind, name, value)
    return Route("tags", name, "")
