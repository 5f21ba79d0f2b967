"""Manifests: validated on PUT, stored byte for byte as blobs, listed in `index.json`.

The digest is always that of the bytes received; nothing is re-serialised.  A PUT is
refused unless every blob and child manifest it names is already in the repository,
except its `subject` (referrers may arrive first) and layers with foreign `urls`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ..digests import Digest, digest_of
from ..errors import ErrorCode, RegistryError
from ..names import is_valid_tag
from .index import Descriptor, Draft
from .manifest_doc import MAX_MANIFEST_BYTES, OFF_LOOP_BYTES, ManifestInfo, Ref, parse_manifest, parse_manifest_async
from .store import Store
from .tags import delete_tag, put_tags

__all__ = ["MAX_MANIFEST_BYTES", "Manifest", "ManifestInfo", "Ref", "parse_manifest"]
MAX_TAGS_PER_PUT = 100


@dataclass(frozen=True)
class Manifest:
    digest: Digest
    media_type: str
    size: int
    body: bytes | None = None


def _reference(reference: str, *, reading: bool = False) -> Digest | str:
    """A digest, or a tag that matches the grammar.

    A reference that is neither names no manifest: a read answers 404 MANIFEST_UNKNOWN (the
    v1.1.1 conformance suite and docker-registry do), a write 400 MANIFEST_INVALID.
    """
    if ":" in reference:
        return Digest.parse(reference)
    if not is_valid_tag(reference):
        if reading:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"reference": reference},
                                message="manifest unknown: not a valid tag or digest")
        raise RegistryError(ErrorCode.MANIFEST_INVALID, {"tag": reference}, message="invalid tag")
    return reference


async def _check_references(store: Store, repo: str, info: ManifestInfo, held: set[str]) -> None:
    """Every blob and child the manifest names is held whole by the repository.

    Through the blob store's `stat`, so a directory at a blob's path, a dedupe reference whose original
    is gone, or a copy scrub found damaged all count as missing: the client pushes it again. What
    an earlier manifest of the same index batch found (`held`, `Draft.held`) is not looked at again.
    """
    missing: list[str] = []
    wanted: list[Ref] = [*([info.config] if info.config else []), *info.children]
    wanted += [r for r in info.blobs if not r.foreign]
    for digest in dict.fromkeys(r.digest for r in wanted):
        if digest in held:
            continue
        try:
            await store.blobs.stat(repo, Digest.parse(digest))
        except RegistryError:
            missing.append(digest)
        else:
            held.add(digest)
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
    info = await parse_manifest_async(body, content_type)
    algorithm = ref.algorithm if isinstance(ref, Digest) else "sha256"
    if len(body) > OFF_LOOP_BYTES:
        digest = await asyncio.to_thread(digest_of, body, algorithm)
    else:
        digest = digest_of(body, algorithm)
    if isinstance(ref, Digest) and digest != ref:
        raise RegistryError(ErrorCode.DIGEST_INVALID, {"digest": str(ref), "computed": str(digest)})
    desc: Descriptor = {"mediaType": info.media_type, "digest": str(digest), "size": len(body)}
    tagging = put_tags(desc, tags)

    async def store_and_tag(draft: Draft) -> None:
        # Under the repository's lock, so GC cannot remove a reference between check and write.
        await _check_references(store, repo, info, draft.held)
        await store.blobs.put_document(repo, digest, body)
        _remember(store, str(digest), info)
        await tagging(draft)

    await store.index.update(repo, store_and_tag)
    store.statistics.record_push(repo, str(digest), tags)
    return Manifest(digest, info.media_type, len(body)), info, tags


def _remember(store: Store, key: str, info: ManifestInfo) -> None:
    kept = info.compact()
    store.manifest_meta.put(key, kept, kept.cost)


async def read_manifest_info(store: Store, repo: str, digest: Digest, body: bytes | None = None, *,
                             full: bool = False) -> ManifestInfo | None:
    """Parsed metadata of a stored manifest (memoised by digest); None when there is no such
    blob or it is too large to be a manifest.  Stored bytes that do not parse raise
    MANIFEST_INVALID: GC must tell "not a manifest" from "a manifest it cannot read".

    `full` reads the bytes again for annotations the memo left out.
    """
    key = str(digest)
    memo = store.manifest_meta.get(key)
    if isinstance(memo, ManifestInfo) and not (full and memo.annotations_elided):
        return memo
    if body is None:
        body = await store.blobs.read_small(repo, digest, MAX_MANIFEST_BYTES)
        if body is None:
            return None
    info = await parse_manifest_async(body, None)
    _remember(store, key, info)
    return info


async def manifest_info(store: Store, repo: str, digest: Digest, body: bytes | None = None, *,
                        full: bool = False) -> ManifestInfo | None:
    """Like `read_manifest_info`, but a document that does not parse is no manifest: None."""
    try:
        return await read_manifest_info(store, repo, digest, body, full=full)
    except RegistryError:
        return None


async def get_manifest(store: Store, repo: str, reference: str, with_body: bool = True) -> Manifest:
    ref = _reference(reference, reading=True)
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
        body = await store.blobs.read_small(repo, digest, MAX_MANIFEST_BYTES)
        if body is None:
            raise unknown
        size = len(body)
    else:
        body = None
        found = await store.blobs.find(repo, digest)
        if found is None:
            raise unknown
        size = found.info.size
    if desc is not None and isinstance(desc.get("mediaType"), str):
        media_type = desc["mediaType"]
    else:
        info = await manifest_info(store, repo, digest, body)
        if info is None:
            raise unknown
        media_type = info.media_type
    if with_body:
        # A GET is a pull (as zot counts them); a HEAD is not.
        store.statistics.record_pull(repo, str(digest))
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
        await store.blobs.discard(repo, digest)

    await store.index.update(repo, forget, after_write=remove_file)
