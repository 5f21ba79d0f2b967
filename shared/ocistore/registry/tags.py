"""Tags as `index.json` descriptors, and the tag list with the spec's pagination.

The mutations here work on the list of descriptors under the repository's index writer.
A manifest that loses its last tag keeps an untagged descriptor, so it stays listed in
the layout (and reachable by digest) until deleted or collected.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Sequence

from ..errors import ErrorCode, RegistryError
from ..mediatypes import REF_NAME
from .index import Descriptor, tag_of
from .store import Store


def _keep_reachable(manifests: list[Descriptor], removed: list[Descriptor]) -> None:
    present = {d["digest"] for d in manifests}
    for d in removed:
        if d["digest"] not in present:
            manifests.append(untagged(d))
            present.add(d["digest"])


def untagged(desc: Descriptor) -> Descriptor:
    out = dict(desc)
    annotations = {k: v for k, v in (desc.get("annotations") or {}).items() if k != REF_NAME}
    if annotations:
        out["annotations"] = annotations
    else:
        out.pop("annotations", None)
    return out


def put_tags(desc: Descriptor, tags: Sequence[str]) -> Callable[[list[Descriptor]], Awaitable[None]]:
    """Point `tags` at `desc` (or record it untagged when `tags` is empty)."""

    async def mutate(manifests: list[Descriptor]) -> None:
        if not tags:
            if not any(d["digest"] == desc["digest"] for d in manifests):
                manifests.append(desc)
            return
        wanted = set(tags)
        displaced = [d for d in manifests if tag_of(d) in wanted and d["digest"] != desc["digest"]]
        manifests[:] = [
            d for d in manifests
            if tag_of(d) not in wanted and not (d["digest"] == desc["digest"] and tag_of(d) is None)
        ]
        for tag in tags:
            manifests.append({**desc, "annotations": {REF_NAME: tag}})
        _keep_reachable(manifests, displaced)

    return mutate


def delete_tag(tag: str) -> Callable[[list[Descriptor]], Awaitable[None]]:
    async def mutate(manifests: list[Descriptor]) -> None:
        removed = [d for d in manifests if tag_of(d) == tag]
        if not removed:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"tag": tag})
        manifests[:] = [d for d in manifests if tag_of(d) != tag]
        _keep_reachable(manifests, removed)

    return mutate


def delete_digest(digest: str) -> Callable[[list[Descriptor]], Awaitable[bool]]:
    """Drop every descriptor of `digest`; True when there was one."""

    async def mutate(manifests: list[Descriptor]) -> bool:
        kept = [d for d in manifests if d["digest"] != digest]
        found = len(kept) != len(manifests)
        manifests[:] = kept
        return found

    return mutate


def paginate(items: Sequence[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """Items strictly after `last` (lexical order), at most `n`; and whether more remain."""
    start = 0
    if last is not None:
        start = bisect.bisect_right(items, last)
    rest = items[start:]
    if n is None:
        return list(rest), False
    return list(rest[:n]), len(rest) > n


async def list_tags(store: Store, repo: str) -> list[str]:
    return (await store.index.require(repo)).sorted_tags()
