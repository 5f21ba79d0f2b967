"""A manifest's bytes read strictly, and the compact facts the registry keeps of it.

Strict because a manifest is a contract between clients: Go's `encoding/json` (every
client, every peer registry) matches keys to fields case-insensitively and keeps the last
of duplicate keys, so a document with `layers` and `LAYERS`, or with `config` twice, would
reference one set of blobs for us and another for a client.  We refuse every document
that two readers could read differently, rather than guess which reading was meant.

Compact because the facts are memoised per digest: a manifest of 4 MiB (a huge annotation,
thousands of layers) must not stay 4 MiB of Python objects.  Only digests, sizes and small
annotations are kept; large annotations are read again from storage when asked for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import jsondoc
from ..digests import Digest
from ..errors import ErrorCode, RegistryError
from ..mediatypes import IMAGE_MANIFESTS, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST

MAX_MANIFEST_BYTES = 4 << 20
# Larger bodies are parsed in a thread, so other clients are not stalled meanwhile.
OFF_LOOP_BYTES = 64 << 10
# Annotations larger than this are not memoised with the manifest's facts.
KEPT_ANNOTATION_BYTES = 16 << 10
MAX_INT64 = (1 << 63) - 1
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream"})

_TOP_FIELDS = ("schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject",
               "annotations")
_DESCRIPTOR_FIELDS = ("mediaType", "digest", "size", "urls", "annotations", "data", "artifactType", "platform")
_PLATFORM_FIELDS = ("architecture", "os", "os.version", "os.features", "variant", "features")


class Ref(NamedTuple):
    """A referenced blob or manifest: what GC, scrub and the reference check need of a descriptor."""

    digest: str
    size: int
    foreign: bool = False  # has `urls`: a non-distributable layer that lives elsewhere


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What the registry needs to know of a manifest, parsed once per digest."""

    media_type: str
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    config: Ref | None = None
    blobs: tuple[Ref, ...] = ()
    children: tuple[Ref, ...] = ()
    # True when `annotations` were left out to keep the memo small: read the manifest again.
    annotations_elided: bool = False

    @property
    def cost(self) -> int:
        """An estimate of the bytes this holds, for the memo's budget."""
        refs = len(self.blobs) + len(self.children) + (self.config is not None)
        notes = sum(len(k) + len(v) + 120 for k, v in (self.annotations or {}).items())
        return 400 + 200 * refs + notes

    def compact(self) -> ManifestInfo:
        """This, without annotations too large to be worth keeping in memory."""
        if not self.annotations or sum(len(k) + len(v) for k, v in self.annotations.items()) <= KEPT_ANNOTATION_BYTES:
            return self
        return ManifestInfo(self.media_type, self.subject, self.artifact_type, None, self.config, self.blobs,
                            self.children, annotations_elided=True)


def _invalid(detail: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, detail)


def _no_case_variants(obj: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """Refuse a key that equals a known field but for case (Go would read it as that field)."""
    folded = {k.casefold(): k for k in known}
    for key in obj:
        field = folded.get(key.casefold())
        if field is not None and field != key:
            raise _invalid(f"{where}key {key!r} differs from the field {field!r} only by case")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _platform(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _invalid(f"{where}.platform must be an object")
    _no_case_variants(value, _PLATFORM_FIELDS, f"{where}.platform: ")
    for key in ("architecture", "os", "os.version", "variant"):
        if key in value and not isinstance(value[key], str):
            raise _invalid(f"{where}.platform.{key} must be a string")
    for key in ("os.features", "features"):
        if key in value and not _strings(value[key]):
            raise _invalid(f"{where}.platform.{key} must be a list of strings")


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is not None and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
        raise _invalid(f"{where}annotations must map strings to strings")
    return value


def _descriptor(value: Any, where: str) -> Ref:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    _no_case_variants(value, _DESCRIPTOR_FIELDS, f"{where}: ")
    if not isinstance(value.get("mediaType"), str):
        raise _invalid(f"{where}.mediaType must be a string")
    size = value.get("size")
    if type(size) is not int or not 0 <= size <= MAX_INT64:
        raise _invalid(f"{where}.size must be an integer from 0 to {MAX_INT64}")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        Digest.parse(digest)
    except RegistryError:
        raise _invalid(f"{where}.digest {digest!r} is not a valid digest") from None
    urls = value.get("urls")
    if urls is not None and not _strings(urls):
        raise _invalid(f"{where}.urls must be a list of strings")
    if "artifactType" in value and not isinstance(value["artifactType"], str):
        raise _invalid(f"{where}.artifactType must be a string")
    if "data" in value:
        try:
            base64.b64decode(value["data"], validate=True)
        except (TypeError, ValueError, binascii.Error):
            raise _invalid(f"{where}.data must be base64") from None
    if "platform" in value:
        _platform(value["platform"], where)
    _annotations(value.get("annotations"), f"{where}.")
    return Ref(digest, size, bool(urls))


def _descriptors(doc: dict[str, Any], key: str) -> tuple[Ref, ...]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise _invalid(f"{key} must be a list")
    # Kept once each: a manifest naming one blob 10,000 times needs it checked once.
    return tuple(dict.fromkeys(_descriptor(d, f"{key}[{i}]") for i, d in enumerate(items)))


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = jsondoc.loads(body, max_bytes=MAX_MANIFEST_BYTES)
    except jsondoc.DocumentError as exc:
        raise _invalid(f"manifest is not valid JSON: {exc.reason}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    _no_case_variants(doc, _TOP_FIELDS, "")
    if "layers" in doc and "manifests" in doc:
        raise _invalid("a manifest has either layers (an image) or manifests (an index), not both")
    schema = doc.get("schemaVersion")
    if type(schema) is not int or schema != 2:
        raise _invalid("schemaVersion must be 2")
    return doc


def parse_manifest(body: bytes, content_type: str | None) -> ManifestInfo:
    """Validate a manifest of one of the accepted types; MANIFEST_INVALID names the fault."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared not in MANIFEST_TYPES and declared not in _GENERIC_TYPES:
        raise _invalid(f"unsupported manifest media type {declared!r}")
    doc = _document(body)
    own = doc.get("mediaType")
    if own is not None and not isinstance(own, str):
        raise _invalid("mediaType must be a string")
    if own and declared in MANIFEST_TYPES and own != declared:
        raise _invalid(f"mediaType {own!r} does not match Content-Type {declared!r}")
    media_type = own or (declared if declared in MANIFEST_TYPES else None)
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    annotations = _annotations(doc.get("annotations"), "")
    subject = doc.get("subject")
    subject_digest = _descriptor(subject, "subject").digest if subject is not None else None
    if media_type in IMAGE_MANIFESTS:
        if "manifests" in doc:
            raise _invalid(f"a {media_type} has layers, not manifests")
        config_doc = doc.get("config")
        config = _descriptor(config_doc, "config")
        config_type = str(config_doc["mediaType"]) if isinstance(config_doc, dict) else ""
        return ManifestInfo(media_type, subject_digest, artifact_type or config_type, annotations,
                            config, _descriptors(doc, "layers"))
    if "layers" in doc:
        raise _invalid(f"a {media_type} has manifests, not layers")
    return ManifestInfo(media_type, subject_digest, artifact_type, annotations,
                        children=_descriptors(doc, "manifests"))


async def parse_manifest_async(body: bytes, content_type: str | None) -> ManifestInfo:
    """`parse_manifest`, in a thread for a large body: parsing 4 MiB takes the loop for ~100 ms."""
    if len(body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(parse_manifest, body, content_type)
    return parse_manifest(body, content_type)
