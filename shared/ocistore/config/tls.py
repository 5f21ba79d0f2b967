"""zot's `http.tls` and `http.ratelimit` blocks, and the `mtls` block of `http.auth`.

The files `http.tls` names are read at `verify` and at start (`ocistore.tls`); here only
their shape is checked, so a config can be parsed on a host that does not hold them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from .base import Block, Whole

# zot compares a method as written (tollbooth's SetMethods), so "get" would limit nothing:
# refused rather than silently without effect.
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class TLSConfig(Block):
    """`cert` and `key` (PEM files) make the server speak TLS 1.2 or later only; `cacert` (PEM,
    one or more certificates) asks clients for a certificate and verifies one that is given."""

    cert: str
    key: str
    cacert: str | None = None

    @field_validator("cert", "key", "cacert")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("expected the path of a PEM file")
        return value


class MethodRate(Block):
    method: str
    rate: Annotated[Whole, Field(ge=1)]

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value not in HTTP_METHODS:
            raise ValueError(f"expected one of {', '.join(HTTP_METHODS)}, in capitals as zot compares them")
        return value


def _methods(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError('expected a list such as [{"method": "GET", "rate": 5}]')
    return value


class RatelimitConfig(Block):
    """zot's limits, each a token bucket per client address: `rate` requests per second for
    every request, and for each of `methods` its own `rate` for requests of that method."""

    rate: Annotated[Whole, Field(ge=1)] | None = None
    methods: Annotated[list[MethodRate], BeforeValidator(_methods)] = Field(default_factory=list)


# zot's names for each attribute (pkg/api/authn.go), matched case-insensitively.
IDENTITY_ATTRIBUTES = {
    "commonname": "CommonName", "cn": "CommonName",
    "subject": "Subject", "dn": "Subject",
    "uri": "URI", "url": "URI",
    "dnsname": "DNSName", "dns": "DNSName",
    "email": "Email", "rfc822name": "Email",
}


def _attributes(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('expected a list such as ["CommonName"]')
    out = []
    for name in value:
        found = IDENTITY_ATTRIBUTES.get(name.strip().lower())
        if found is None:
            raise ValueError(f"{name!r} is not an identity attribute: expected CommonName, Subject, Email, "
                             "URI or DNSName")
        out.append(found)
    return out


class MTLSConfig(Block):
    """zot's `http.auth.mtls`: which attributes of a verified client certificate name the
    client, tried in order; the first one present wins. Made for the authentication block to
    hold; `ocistore.tls_identity.ClientCertificate.identity` applies it."""

    # zot's default, its behaviour before the list existed.
    identity_attributes: Annotated[list[str], BeforeValidator(_attributes)] = Field(
        default_factory=lambda: ["CommonName"])
    # For URI: the identity is what the pattern's first group matches in the URI (searched,
    # not anchored, as Go's FindStringSubmatch); without a pattern, the whole URI.
    uri_san_pattern: str | None = None
    uri_san_index: Annotated[Whole, Field(ge=0)] = 0
    dns_san_index: Annotated[Whole, Field(ge=0)] = 0
    email_san_index: Annotated[Whole, Field(ge=0)] = 0

    @field_validator("uri_san_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if compiled.groups < 1:
            raise ValueError("needs a group: the identity is what its first group matches, e.g. "
                             "spiffe://example.org/workload/(.*)")
        return value
