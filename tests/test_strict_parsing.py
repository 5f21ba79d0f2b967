"""Unit tests of the strict readers: JSON documents, manifests, wire integers and the grammars.

Each case is a document or value one reader used to take (or crash on) and that must now be
refused with a typed error, or read exactly as a Go client reads it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocistore import jsondoc
from ocistore.config import ConfigError, parse_config
from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.names import is_valid_name, is_valid_tag, name_fault
from ocistore.recent import Recent
from ocistore.registry.manifest_doc import ManifestInfo, parse_manifest
from ocistore.wire import wire_int

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HEX = "a" * 64
DESC = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{HEX}", "size": 3}
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{'b' * 64}", "size": 2}


def manifest(**changes: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": [DESC], **changes}


@pytest.mark.parametrize(("data", "reason"), [
    (b"[" * 1000 + b"]" * 1000, "nested deeper"),
    (b'{"a":' * 100 + b"1" + b"}" * 100, "nested deeper"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
    (b'{"a": "\xff"}', "not valid UTF-8"),
    ('{"a": 1}'.encode("utf-16"), "not valid UTF-8"),
    (b'{"a": "\\ud800"}', "lone surrogate"),
    (b'{"a": "\\udc00x"}', "lone surrogate"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "-Infinity"),
    (b'{"a": 1e999}', "out of range"),
    (b'{"a": ' + b"1" * 5000 + b"}", "number of 5000"),
    (b'{"a": ', "not valid JSON"),
    (b"x" * 101, "more than the 100 allowed"),
])
def test_jsondoc_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(jsondoc.DocumentError) as exc:
        jsondoc.loads(data, max_bytes=100 if reason.startswith("more") else 1 << 20)
    assert reason in exc.value.reason


def test_jsondoc_reads_what_go_reads() -> None:
    assert jsondoc.loads(b'{"a": "\\ud83d\\ude00", "b": "[[[[", "c": [[1.5]]}', max_bytes=100) == {
        "a": "\U0001f600", "b": "[[[[", "c": [[1.5]]}
    # Brackets inside strings do not count towards the depth.
    assert jsondoc.loads(json.dumps({"s": "[" * 5000}).encode(), max_bytes=1 << 20) == {"s": "[" * 5000}
    assert jsondoc.loads(b"[" * 64 + b"]" * 64, max_bytes=1000) is not None


@pytest.mark.parametrize(("doc", "reason"), [
    (manifest(LAYERS=[DESC]), "'LAYERS' differs from the field 'layers'"),
    (manifest(MediaType=OCI_MANIFEST), "'MediaType'"),
    (manifest(schemaversion=2), "'schemaversion'"),
    (manifest(config={**CONFIG, "Digest": CONFIG["digest"]}), "config: key 'Digest'"),
    (manifest(layers=[{**DESC, "SIZE": 4}]), "layers[0]: key 'SIZE'"),
    (manifest(layers=[{**DESC, "\u017fize": 4}]), "only by case"),  # Go folds U+017F (long s) to s
    (manifest(subject={**DESC, "mediatype": "x"}), "subject: key 'mediatype'"),
    (manifest(manifests=[DESC]), "either layers"),
    (manifest(schemaVersion=2.0), "schemaVersion must be 2"),
    (manifest(layers=[{**DESC, "size": 1 << 63}]), "size must be an integer"),
    (manifest(layers=[{**DESC, "data": "not base64!"}]), "data must be base64"),
    (manifest(layers=[{**DESC, "platform": {"OS": "linux"}}]), "platform: key 'OS'"),
])
def test_manifest_that_go_reads_differently_is_invalid(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST)
    assert exc.value.code is ErrorCode.MANIFEST_INVALID
    assert reason in str(exc.value.detail)


def test_index_with_case_variant_in_a_child_is_invalid() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [{**DESC, "mediaType": OCI_MANIFEST, "Platform": {"os": "linux"}}]}
    with pytest.raises(RegistryError) as exc:
        parse_manifest(json.dumps(doc).encode(), OCI_INDEX)
    assert "'Platform'" in str(exc.value.detail)


@pytest.mark.parametrize("body", [
    json.dumps(manifest()).replace('"layers"', '"layers": [], "layers"').encode(),
    b"\xef\xbb\xbf" + json.dumps(manifest()).encode(),
    json.dumps(manifest()).encode("utf-16"),
    json.dumps(manifest(annotations={"a": "\ud800"})).encode(),  # json.dumps escapes it as \ud800
    b"[" * 1000 + b"]" * 1000,
])
def test_manifest_bytes_that_are_not_strict_json_are_invalid(body: bytes) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(body, OCI_MANIFEST)
    assert exc.value.code is ErrorCode.MANIFEST_INVALID


def test_manifest_info_is_compact() -> None:
    """Repeated layers are kept once, and a huge annotation is left out of the memoised facts."""
    doc = manifest(layers=[DESC] * 5000, annotations={"big": "x" * (1 << 20)})
    info = parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST)
    assert len(info.blobs) == 1 and info.annotations is not None
    kept = info.compact()
    assert kept.annotations is None and kept.annotations_elided and kept.blobs == info.blobs
    assert kept.cost < 4096
    small = ManifestInfo(OCI_MANIFEST, annotations={"a": "b"})
    assert small.compact() is small


def test_recent_is_bounded_by_bytes_and_keeps_the_newest() -> None:
    memo: Recent[str, int] = Recent(100, max_bytes=1000)
    for i in range(10):
        memo.put(str(i), i, 300)
    assert len(memo) == 3 and memo.total == 900 and memo.get("9") == 9 and memo.get("6") is None
    memo.put("huge", -1, 10_000)
    assert len(memo) == 1 and memo.get("huge") == -1
    memo.pop("huge")
    assert memo.total == 0


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("42", 42), ("007", 7), ("9223372036854775807", (1 << 63) - 1),
    ("9223372036854775808", None), ("1" * 20, None), ("9" * 5000, None), ("", None),
    ("²", None), ("١٢", None), ("-1", None), ("+1", None), (" 1", None), ("1\n", None), ("0x10", None),
])
def test_wire_int(text: str, value: int | None) -> None:
    assert wire_int(text) == value


@pytest.mark.parametrize("tag", ["latest\n", "latest\r", "\nlatest", "v1 ", "a" * 129, "-x", ".x"])
def test_tag_matched_whole(tag: str) -> None:
    assert not is_valid_tag(tag)


@pytest.mark.parametrize("name", ["library/app\n", "app\n", "a/b\n", "\na"])
def test_name_matched_whole(name: str) -> None:
    assert not is_valid_name(name) and name_fault(name) is not None


@pytest.mark.parametrize("text", [f"sha256:{HEX}\n", f"sha256:{HEX}\r\n", f"\nsha256:{HEX}",
                                  f"sha512:{'a' * 128}\n"])
def test_digest_matched_whole(text: str) -> None:
    with pytest.raises(RegistryError) as exc:
        Digest.parse(text)
    assert exc.value.code is ErrorCode.DIGEST_INVALID


def test_config_sub_path_matched_whole() -> None:
    base = {"storage": {"rootDirectory": "/tmp/x", "subPaths": {"/a\n": {"rootDirectory": "/tmp/y"}}}}
    with pytest.raises(ConfigError):
        parse_config(base)


@pytest.mark.parametrize("duration", ["1h\n5m", "²s", "١s"])
def test_duration_ascii_only(duration: str) -> None:
    from ocistore.durations import parse_duration

    with pytest.raises(ValueError):
        parse_duration(duration)
