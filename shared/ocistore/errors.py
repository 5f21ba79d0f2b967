"""The Distribution Spec's error codes, raised by the registry logic.

The API turns a `RegistryError` into the spec's JSON body; the CLI prints it.  Keeping
the code, the HTTP status and the message together means a new failure can never be
answered with a status that disagrees with its code.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    """Each code with its HTTP status and the spec's message."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    RANGE_INVALID = (416, "requested range not satisfiable")
    MANIFEST_TOO_LARGE = (413, "manifest too large")
    TOO_MANY_TAGS = (414, "too many tags in one request")
    UNAVAILABLE = (503, "storage unavailable")
    ENDPOINT_UNKNOWN = (404, "no such endpoint")
    METHOD_UNKNOWN = (405, "method not allowed on this endpoint")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    STORAGE_FULL = (507, "storage is full")
    UNKNOWN = (500, "internal error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def wire_code(self) -> str:
        """The code as the wire shows it: the spec has no code of its own for 413 and 414."""
        return _WIRE_ALIASES.get(self, self.name)


_WIRE_ALIASES = {
    ErrorCode.MANIFEST_TOO_LARGE: "MANIFEST_INVALID",
    ErrorCode.TOO_MANY_TAGS: "TAG_INVALID",
    ErrorCode.ENDPOINT_UNKNOWN: "UNSUPPORTED",
    ErrorCode.METHOD_UNKNOWN: "UNSUPPORTED",
    ErrorCode.STORAGE_FULL: "UNKNOWN",
}


class RegistryError(Exception):
    """A failure the client caused or must be told about, with the spec's code."""

    def __init__(
        self,
        code: ErrorCode,
        detail: Any = None,
        *,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.message = message or code.message
        self.headers = headers or {}
        super().__init__(f"{code.name}: {self.message}" + (f" ({detail})" if detail else ""))

    @property
    def status(self) -> int:
        return self.code.status

    def body(self) -> dict[str, Any]:
        return {
            "errors": [
                {"code": self.code.wire_code, "message": self.message, "detail": self.detail}
            ]
        }


# What a bad stored object can raise out of code that reads it (a RegistryError when it is
# caught where it is read, else the builtin a malformed value leads to).  GC and scrub
# passes catch these per repository, so one bad object never stops a whole pass; anything
# else (a storage outage, a killed process) still ends the pass.
DATA_FAULTS: tuple[type[Exception], ...] = (RegistryError, ValueError, TypeError, KeyError, RecursionError)
