"""Manifests: validated on PUT, stored byte for byte as blobs, listed in `index.json`.

The digest is always that of the bytes received; nothing is re-serialised.  A PUT is
refused unless every blob and child manifest it names is already in the repository,
except its `subject` (referrers may arrive first) and layers with foreign `urls`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import dedupe
from ..digests import Digest, digest_of
from ..errors import ErrorCode, RegistryError
from ..layout import blob_path
from ..mediatypes import IMAGE_MANIFESTS, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST
from ..names import is_valid_tag
from ..storage import PathNotFound
from .index import Descriptor, Draft
from .store import Store
from .tags import delete_tag, put_tags

MAX_MANIFEST_BYTES = 4 << 20
MAX_TAGS_PER_PUT = 100
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream"})


@dataclass(frozen=True)
class ManifestInfo:
    """What the registry needs to know of a manifest, parsed once per digest."""

    media_type: str
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    config: Descriptor | None = None
    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = field(default=())


@dataclass(frozen=True)
class Manifest:
    digest: Digest
    media_type: str
    size: int
    body: bytes | None = None


def _invalid(detail: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, detail)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    if not isinstance(value.get("mediaType"), str):
        raise _invalid(f"{where}.mediaType must be a string")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        Digest.parse(digest)
    except RegistryError:
        raise _invalid(f"{where}.digest {digest!r} is not a valid digest") from None
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise _invalid(f"{where}.urls must be a list of strings")
    return value


def _descriptors(doc: dict[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise _invalid(f"{key} must be a list")
    return tuple(_descriptor(d, f"{key}[{i}]") for i, d in enumerate(items))


def parse_manifest(body: bytes, content_type: str | None) -> ManifestInfo:
    """Validate a manifest of one of the accepted types; MANIFEST_INVALID names the fault."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared not in MANIFEST_TYPES and declared not in _GENERIC_TYPES:
        raise _invalid(f"unsupported manifest media type {declared!r}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
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
    annotations = doc.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise _invalid("annotations must map strings to strings")
    subject = doc.get("subject")
    subject_digest = _descriptor(subject, "subject")["digest"] if subject is not None else None
    if media_type in IMAGE_MANIFESTS:
        config = _descriptor(doc.get("config"), "config")
        return ManifestInfo(media_type, subject_digest, artifact_type or config["mediaType"], annotations,
                            config, _descriptors(doc, "layers"))
    return ManifestInfo(media_type, subject_digest, artifact_type, annotations,
                        children=_descriptors(doc, "manifests"))


def _reference(reference: str) -> Digest | str:
    """A digest, or a tag that matches the grammar."""
    if ":" in reference:
        return Digest.parse(reference)
    if not is_valid_tag(reference):
        raise RegistryError(ErrorCode.MANIFEST_INVALID, {"tag": reference}, message="invalid tag")
    return reference


async def _check_references(store: Store, repo: str, info: ManifestInfo) -> None:
    missing: list[str] = []
    wanted: list[Descriptor] = [*([info.config] if info.config else []), *info.children]
    wanted += [d for d in info.blobs if not d.get("urls")]
    for d in wanted:
        if not await store.driver.exists(blob_path(repo, Digest.parse(d["digest"]))):
            missing.append(d["digest"])
    if missing:
        raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, {"digests": missing})


async def put_manifest(store: Store, repo: str, reference: str, body: bytes, content_type: str | None,
                       extra_tags: Sequence[str] = ()) -> tuple[Manifest, ManifestInfo, list[str]]:
    """Store a manifest and point its tags at it; returns it, its metadata and the tags set."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise RegistryError(ErrorCode.MANIFEST_TOO_LARGE, {"limit": MAX_MANIFEST_BYTES})
    ref = _reference(reference)
    if len(extra_tags) > MAX_TAGS_PER_PUT:
        raise RegistryError(ErrorCode.TOO_MANY_TAGS, {"limit": MAX_TAGS_PER_PUT})
    tags = [ref] if isinstance(ref, str) else []
    for tag in extra_tags:
        if not is_valid_tag(tag):
            raise RegistryError(ErrorCode.MANIFEST_INVALID, {"tag": tag}, message="invalid tag")
        if tag not in tags:
            tags.append(tag)
    info = parse_manifest(body, content_type)
    digest = digest_of(body, ref.algorithm if isinstance(ref, Digest) else "sha256")
    if isinstance(ref, Digest) and digest != ref:
        raise RegistryError(ErrorCode.DIGEST_INVALID, {"digest": str(ref), "computed": str(digest)})
    desc: Descriptor = {"mediaType": info.media_type, "digest": str(digest), "size": len(body)}
    tagging = put_tags(desc, tags)

    async def store_and_tag(draft: Draft) -> None:
        # Under the repository's lock, so GC cannot remove a reference between check and write.
        await _check_references(store, repo, info)
        path = blob_path(repo, digest)
        try:
            held = (await store.driver.stat(path)).size == len(body)
        except PathNotFound:
            held = False
        if held:
            await store.driver.touch(path)  # pushed again: fresh for GC's delay
        else:
            await store.driver.put_content(path, body)
        store.manifest_meta.put(str(digest), info)
        await tagging(draft)

    await store.index.update(repo, store_and_tag)
    return Manifest(digest, info.media_type, len(body)), info, tags


async def _read_small(store: Store, repo: str, digest: Digest) -> bytes | None:
    """A stored manifest's bytes; None when absent or too large to be one (a layer's digest)."""
    path = blob_path(repo, digest)
    try:
        info = await store.driver.stat(path)
        if info.size > MAX_MANIFEST_BYTES:
            return None
        resolved = await dedupe.resolve(store, str(digest), path, info)
        return await store.driver.get_content(resolved[0]) if resolved else None
    except PathNotFound:
        return None


async def manifest_info(store: Store, repo: str, digest: Digest, body: bytes | None = None) -> ManifestInfo | None:
    """Parsed metadata of a stored manifest (cached by digest); None when not a manifest."""
    key = str(digest)
    cached = store.manifest_meta.get(key)
    if isinstance(cached, ManifestInfo):
        return cached
    if body is None:
        body = await _read_small(store, repo, digest)
        if body is None:
            return None
    try:
        info = parse_manifest(body, None)
    except RegistryError:
        return None
    store.manifest_meta.put(key, info)
    return info


async def get_manifest(store: Store, repo: str, reference: str, with_body: bool = True) -> Manifest:
    ref = _reference(reference)
    idx = await store.index.require(repo)
    unknown = RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"reference": reference})
    if isinstance(ref, str):
        desc = idx.by_tag.get(ref)
        if desc is None:
            raise unknown
        digest = Digest.parse(desc["digest"])
    else:
        digest = ref
        desc = idx.by_digest.get(str(digest))
    if with_body or desc is None:
        body = await _read_small(store, repo, digest)
        if body is None:
            raise unknown
        size = len(body)
    else:
        body = None
        path = blob_path(repo, digest)
        try:
            resolved = await dedupe.resolve(store, str(digest), path, await store.driver.stat(path))
        except PathNotFound:
            raise unknown from None
        if resolved is None:
            raise unknown
        size = resolved[1].size
    if desc is not None and isinstance(desc.get("mediaType"), str):
        media_type = desc["mediaType"]
    else:
        info = await manifest_info(store, repo, digest, body)
        if info is None:
            raise unknown
        media_type = info.media_type
    return Manifest(digest, media_type, size, body if with_body else None)


async def delete_manifest(store: Store, repo: str, reference: str) -> None:
    """By digest: the manifest and all its tags go.  By tag: only the tag goes."""
    ref = _reference(reference)
    await store.index.require(repo)
    if isinstance(ref, str):
        await store.index.update(repo, delete_tag(ref))
        return
    digest = ref
    # A digest the index does not list may still be a manifest (a child of an index in a
    # layout made elsewhere); a layer's digest is not, and is never deleted from here.
    is_manifest = await manifest_info(store, repo, digest) is not None

    async def forget(draft: Draft) -> None:
        listed = bool(draft.remove(lambda d: d["digest"] == str(digest)))
        if not listed and not is_manifest:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"digest": str(digest)})

    async def remove_file() -> None:
        try:
            await dedupe.delete_holder(store, blob_path(repo, digest))
        except PathNotFound:
            pass

    await store.index.update(repo, forget, after_write=remove_file)
