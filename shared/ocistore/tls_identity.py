"""Who a verified client certificate names: zot's mTLS identity, from what `ssl` reports.

A server with `http.tls.cacert` verifies a client certificate when one is given; the
connection's `getpeercert()` dict is turned into a `ClientCertificate` once per connection,
and `identity` applies zot's `http.auth.mtls` attributes to it (pkg/api/authn.go,
`extractMTLSIdentity`): the first attribute of `identityAttributes` the certificate has
names the client, so an access-control policy written for zot names the same users here.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config.tls import MTLSConfig

# pkix.Name's own fields, in the order Go's Name.ToRDNSequence emits them (ssl's long
# names, Go's short ones). Subject.String() prints that sequence reversed, most specific first.
_GO_FIELDS = (
    ("countryName", "C"), ("stateOrProvinceName", "ST"), ("localityName", "L"), ("streetAddress", "STREET"),
    ("postalCode", "POSTALCODE"), ("organizationName", "O"), ("organizationalUnitName", "OU"),
    ("commonName", "CN"), ("serialNumber", "SERIALNUMBER"),
)
_GO_NAMES = dict(_GO_FIELDS)
# Parsed into those fields and so left out of the leading "extra names" (serialNumber is not:
# Go prints it twice, once from each list).
_PARSED = frozenset(_GO_NAMES) - {"serialNumber"}
# An ASN.1 PrintableString's characters: Go marshals a string as one when it can, else UTF8String.
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")

Pair = tuple[str, str]


@dataclass(frozen=True)
class ClientCertificate:
    """The parts of a verified client certificate an identity can come from."""

    subject: tuple[tuple[Pair, ...], ...]  # the RDNs in certificate order, ssl's long names
    alt_names: tuple[Pair, ...]            # subjectAltName entries as ssl gives them: ("DNS", ...), ("URI", ...)

    @classmethod
    def from_peercert(cls, peercert: dict[str, Any] | None) -> ClientCertificate | None:
        """From `SSLObject.getpeercert()`; None when the client sent no certificate (an
        unverified one never gets this far: the handshake fails)."""
        if not peercert:
            return None
        subject = tuple(tuple((str(k), str(v)) for k, v in rdn) for rdn in peercert.get("subject", ()))
        alt = tuple((str(k), str(v)) for k, v in peercert.get("subjectAltName", ()))
        return cls(subject, alt)

    def _attributes(self) -> list[Pair]:
        return [pair for rdn in self.subject for pair in rdn]

    @property
    def common_name(self) -> str:
        """The last commonName, as Go's parser keeps it; "" when there is none."""
        names = [v for k, v in self._attributes() if k == "commonName"]
        return names[-1] if names else ""

    def _alt(self, kind: str) -> list[str]:
        return [v for k, v in self.alt_names if k == kind]

    @property
    def uris(self) -> list[str]:
        return self._alt("URI")

    @property
    def dns_names(self) -> list[str]:
        return self._alt("DNS")

    @property
    def emails(self) -> list[str]:
        return self._alt("email")

    @property
    def subject_string(self) -> str:
        """The subject as Go's pkix.Name.String() writes it (zot's "Subject" identity)."""
        attributes = self._attributes()
        extras = [[pair] for pair in attributes if pair[0] not in _PARSED]
        fields: list[list[Pair]] = []
        for long_name, _ in _GO_FIELDS:
            values = [v for k, v in attributes if k == long_name]
            if long_name in ("commonName", "serialNumber"):
                values = values[-1:]
            if values:
                fields.append([(long_name, v) for v in values])
        rdns = extras + fields
        return ",".join("+".join(_go_attribute(k, v) for k, v in rdn) for rdn in reversed(rdns))

    def identity(self, mtls: MTLSConfig | None = None) -> str | None:
        """The client's name by zot's rules: the first of `identityAttributes` present in the
        certificate (CommonName by default); None when none is."""
        mtls = mtls or MTLSConfig()
        for attribute in mtls.identity_attributes:
            found = self._by_attribute(attribute, mtls)
            if found:
                return found
        return None

    def _by_attribute(self, attribute: str, mtls: MTLSConfig) -> str | None:
        if attribute == "CommonName":
            return self.common_name or None
        if attribute == "Subject":
            return self.subject_string
        if attribute == "URI":
            uri = _at(self.uris, mtls.uri_san_index)
            if uri is None or not mtls.uri_san_pattern:
                return uri
            match = re.search(mtls.uri_san_pattern, uri)
            return match.group(1) if match and match.group(1) is not None else None
        if attribute == "DNSName":
            return _at(self.dns_names, mtls.dns_san_index)
        if attribute == "Email":
            return _at(self.emails, mtls.email_san_index)
        raise ValueError(f"unknown identity attribute {attribute!r}")


def identity_from_cert(peercert: dict[str, Any] | None, attributes: Sequence[str] = ("CommonName",),
                       uri_san_pattern: str | None = None) -> str | None:
    """The identity a `getpeercert()` dict gives under zot's `identityAttributes` and `uriSanPattern`."""
    cert = ClientCertificate.from_peercert(peercert)
    if cert is None:
        return None
    return cert.identity(MTLSConfig(identity_attributes=list(attributes), uri_san_pattern=uri_san_pattern))


def _at(values: list[str], index: int) -> str | None:
    return values[index] if 0 <= index < len(values) else None


def _go_attribute(long_name: str, value: str) -> str:
    short = _GO_NAMES.get(long_name)
    if short is None:  # Go knows no name for it: the OID and the DER of the value, unescaped
        return f"{_oid(long_name)}=#{_der_string(value).hex()}"
    return f"{short}={_go_escape(value)}"


def _go_escape(value: str) -> str:
    out = []
    last = len(value) - 1
    for i, c in enumerate(value):
        escape = c in ',+"\\<>;' or (c == " " and i in (0, last)) or (c == "#" and i == 0)
        out.append(f"\\{c}" if escape else c)
    return "".join(out)


def _oid(name: str) -> str:
    try:
        return str(ssl._ASN1Object.fromname(name).oid)
    except ValueError:
        return name


def _der_string(value: str) -> bytes:
    body = value.encode()
    tag = 0x13 if _PRINTABLE.fullmatch(value) else 0x0C
    return bytes([tag]) + _der_length(len(body)) + body


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw

