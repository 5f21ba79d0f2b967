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
from .index import Descriptor, Draft, tag_of
from .store import Store


def keep_reachable(draft: Draft, removed: list[Descriptor]) -> None:
    """A manifest whose last tag went stays listed, untagged (GC decides when it goes)."""
    for d in removed:
        if draft.count(d["digest"]) == 0:
            draft.add(untagged(d))


def untagged(desc: Descriptor) -> Descriptor:
    out = dict(desc)
    annotations = {k: v for k, v in (desc.get("annotations") or {}).items() if k != REF_NAME}
    if annotations:
        out["annotations"] = annotations
    else:
        out.pop("annotations", None)
    return out


def put_tags(desc: Descriptor, tags: Sequence[str]) -> Callable[[Draft], Awaitable[None]]:
    """Point `tags` at `desc` (or record it untagged when `tags` is empty)."""
    digest = desc["digest"]

    async def mutate(draft: Draft) -> None:
        if not tags:
            if draft.count(digest) == 0:
                draft.add(desc)
            return
        wanted = set(tags)
        displaced: list[Descriptor] = []
        if draft.untagged(digest) or any(draft.tagged(t) is not None for t in wanted):
            removed = draft.remove(
                lambda d: tag_of(d) in wanted or (d["digest"] == digest and tag_of(d) is None)
            )
            displaced = [d for d in removed if d["digest"] != digest]
        for tag in tags:
            draft.add({**desc, "annotations": {REF_NAME: tag}})
        keep_reachable(draft, displaced)

    return mutate


def delete_tag(tag: str) -> Callable[[Draft], Awaitable[None]]:
    async def mutate(draft: Draft) -> None:
        removed = draft.remove(lambda d: tag_of(d) == tag)
        if not removed:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"tag": tag})
        keep_reachable(draft, removed)

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
