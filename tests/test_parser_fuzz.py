"""Property-based fuzzing of every parser of client input: nothing but a RegistryError escapes.

Any other exception would be a 500.  The strategies mix the grammar's own alphabet with
Unicode digits, control characters and very long numbers, since that is where the parsers
used to break (`\\d`, `isdigit()`, `re.match` with `$`, recursive JSON).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from ocistore import jsondoc
from ocistore.digests import Digest
from ocistore.errors import RegistryError
from ocistore.names import check_name, is_valid_tag
from ocistore.registry.manifest_doc import parse_manifest
from ocistore.wire import wire_int
from ocistore_api.body import content_length
from ocistore_api.paths import parse_path
from ocistore_api.ranges import parse_range
from ocistore_api.upload_routes import _content_range

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRICKY = st.sampled_from(["0", "9", "²", "٣", "\n", "\r", " ", "-", "/", "*", ":", "=", "bytes", "9" * 30,
                          "9" * 5000, "sha256:", "a" * 64, "%0A", "\x00", "\u017f"])
WIRE_TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=8)), max_size=8).map("".join)


def refused_or_ok(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except RegistryError:
        pass


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.encode("latin-1"), v.encode("utf-8")) for k, v in headers.items()]
    return Request({"type": "http", "method": "PATCH", "path": "/", "headers": raw, "query_string": b""})


@FUZZ
@given(WIRE_TEXT)
def test_names_tags_digests(text: str) -> None:
    refused_or_ok(check_name, text)
    refused_or_ok(Digest.parse, text)
    refused_or_ok(parse_path, f"/v2/{text}/manifests/latest")
    if is_valid_tag(text):
        assert text.isascii() and text.isprintable() and " " not in text and len(text) <= 128


@FUZZ
@given(WIRE_TEXT, st.integers(min_value=0, max_value=1 << 40))
def test_range(text: str, size: int) -> None:
    for header in (text, f"bytes={text}", f"bytes={text}-", f"bytes=-{text}"):
        try:
            got = parse_range(header, size)
        except RegistryError as exc:
            assert exc.status == 416
            continue
        if got is not None:
            assert 0 <= got[0] <= got[1] < size


@FUZZ
@given(WIRE_TEXT)
def test_content_range_and_length(text: str) -> None:
    for value in (text, f"0-{text}", f"{text}-{text}", f"bytes 0-9/{text}"):
        refused_or_ok(_content_range, request_with({"content-range": value}))
        refused_or_ok(content_length, request_with({"content-length": value}))
    value = wire_int(text)
    assert value is None or (text.isascii() and 0 <= value < 1 << 63)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests", "digest", "size",
                         "urls", "annotations", "subject", "LAYERS", "Size", "platform", "data"]) | st.text(max_size=5),
        children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(JSON_VALUES, st.sampled_from([None, "application/vnd.oci.image.manifest.v1+json",
                                     "application/vnd.oci.image.index.v1+json", "text/plain"]))
def test_manifest_documents(doc: Any, content_type: str | None) -> None:
    refused_or_ok(parse_manifest, json.dumps(doc).encode(), content_type)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"\\ud800", b":",
                                                           b",", b"1e999", b"NaN", b"\xef\xbb\xbf", b"\xff"]),
                                         max_size=200))
def test_manifest_bytes(noise: bytes, tokens: list[bytes]) -> None:
    body = noise + b"".join(tokens)
    refused_or_ok(parse_manifest, body, None)
    try:
        jsondoc.loads(body, max_bytes=1 << 20)
    except jsondoc.DocumentError:
        pass
