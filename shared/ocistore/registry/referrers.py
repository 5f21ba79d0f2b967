"""The referrers API: manifests of a repository whose `subject` is a given digest.

A repository that does not exist yet has no referrers: the answer is an empty index, never
a 404 (the spec says a registry with this API MUST NOT answer 404 there; clients fall back
to the tag schema on a 404 and would then push referrers where nothing lists them).
"""

from __future__ import annotations

from typing import Any

from ..digests import Digest
from ..errors import RegistryError
from ..mediatypes import OCI_INDEX
from .manifests import manifest_info
from .store import Store


async def referrers(store: Store, repo: str, subject: Digest, artifact_type: str | None) -> dict[str, Any]:
    """An image index of the referrers, filtered by `artifactType` when given."""
    idx = await store.index.read(repo)
    wanted = str(subject)
    found: list[dict[str, Any]] = []
    if idx is None:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
    seen: set[str] = set()
    for desc in idx.manifests:
        digest = desc["digest"]
        if digest in seen:
            continue
        seen.add(digest)
        try:
            parsed = Digest.parse(digest)
        except RegistryError:
            continue  # a foreign layout may list odd entries; they refer to nothing
        info = await manifest_info(store, repo, parsed)
        if info is None or info.subject != wanted:
            continue
        if artifact_type is not None and info.artifact_type != artifact_type:
            continue
        if info.annotations_elided:  # too large to memoise: read them again
            info = await manifest_info(store, repo, parsed, full=True) or info
        entry: dict[str, Any] = {"mediaType": info.media_type, "digest": digest, "size": desc.get("size", 0)}
        if info.artifact_type:
            entry["artifactType"] = info.artifact_type
        if info.annotations:
            entry["annotations"] = info.annotations
        found.append(entry)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
