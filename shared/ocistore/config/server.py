"""The `http` and `log` blocks."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .auth import AccessControlConfig, AuthConfig, check_auth
from .base import Block, Duration, Whole, settle
from .tls import RatelimitConfig, TLSConfig


def _port(value: Any) -> Any:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a port number")
    return value


def _compat(value: Any) -> Any:
    if not isinstance(value, list) or any(v != "docker2s2" for v in value):
        raise ValueError('the only compat setting is "docker2s2"')
    return value


class HTTPConfig(Block):
    """Where to listen, and the bounds every connection lives within (see the README's
    "Connection limits"): a client that sends nothing, trickles, or sends a huge header
    must not hold resources that other clients need."""

    REFUSED: ClassVar[dict[str, str]] = {
        "externalurl": "externalUrl (used by zot's OpenID login only)",
        "alloworigin": "CORS: set the headers in a proxy in front of ocistore",
    }

    address: str = "127.0.0.1"
    # zot's default is 8080; ocistore keeps 5000, the port every registry client's docs assume.
    port: Annotated[int, BeforeValidator(_port), Field(ge=0, le=65535)] = 5000
    # zot's names, 60s by default there too. Go applies them to a whole request or response;
    # ocistore to inactivity, so a multi-GiB layer on a slow link is never cut while bytes flow.
    # readTimeout sets headerTimeout and bodyIdleTimeout unless those are given.
    read_timeout: Duration | None = None
    write_timeout: Duration = 60.0
    # Docker's schema 2 manifests are always accepted, so zot's one compat setting changes nothing.
    compat: Annotated[list[str], BeforeValidator(_compat)] = Field(default_factory=list)
    # ocistore's own.
    max_header_bytes: Annotated[Whole, Field(ge=1024, le=16 << 20)] = 64 * 1024  # request line and headers -> 431
    max_header_fields: Annotated[Whole, Field(ge=8, le=10_000)] = 100  # header lines -> 431
    header_timeout: Duration = 10.0        # first byte of a request (or accept) to end of its headers
    body_idle_timeout: Duration = 60.0     # longest gap between body bytes
    keep_alive_timeout: Duration = 30.0    # idle time between requests on one connection
    max_requests_per_connection: Annotated[Whole, Field(ge=1, le=1 << 31)] = 1000
    # None: half the file-descriptor limit (raised to its hard limit at start), at most 10,000.
    max_connections: Annotated[Whole, Field(ge=1, le=1 << 20)] | None = None
    # zot's: HTTPS with these files (README "TLS"), and per-client request rates ("Rate limiting").
    tls: TLSConfig | None = None
    ratelimit: RatelimitConfig | None = None
    # zot's authentication and access control (see config/auth.py); none: every request is allowed.
    auth: AuthConfig | None = None
    access_control: AccessControlConfig | None = None
    # The Basic challenge's realm; zot answers "Authorization Required" when it is empty.
    realm: str = "Authorization Required"

    @field_validator("read_timeout", "write_timeout", "header_timeout", "body_idle_timeout", "keep_alive_timeout")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("expected a duration above zero, such as 10s")
        return value

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        if not all(" " <= ch <= "~" for ch in value):
            raise ValueError("expected printable ASCII: the realm goes into a WWW-Authenticate header")
        return value or "Authorization Required"

    @model_validator(mode="after")
    def _auth_agrees(self) -> HTTPConfig:
        check_auth(self.auth, self.access_control, self.tls)
        return self

    @model_validator(mode="after")
    def _read_timeout(self) -> HTTPConfig:
        if self.read_timeout is None:
            return self
        settle(self, **{k: self.read_timeout for k in ("header_timeout", "body_idle_timeout")
                        if k not in self.model_fields_set})
        return self


_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")


def _level(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in _LEVELS:
        return value.lower()
    raise ValueError(f"expected one of {', '.join(_LEVELS)}")


def _format(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("json", "text"):
        return value.lower()
    raise ValueError('expected "json" or "text"')


class LogConfig(Block):
    # zot's default is debug; ocistore's debug output follows every storage call, so it
    # starts at info, what an operator runs with.
    level: Annotated[str, BeforeValidator(_level)] = "info"
    output: str | None = None
    # zot's: a file that gets one JSON line per mutating request.
    audit: str | None = None
    # ocistore's own: "json" (zot's format) or "text"; unset: text on a terminal, else JSON.
    format: Annotated[str | None, BeforeValidator(_format)] = None
