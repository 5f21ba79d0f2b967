"""One page of the catalog without walking the whole store.

`catalog.catalog` walks every store to list every repository, which the API's `_catalog`
then sorts and pages. A page of the operators' web page needs only `limit` names after
`last`, so this walks each store best-first in the catalog's own order (Python's string
order): a directory waits in a heap under its path, which sorts before everything below it,
so the smallest path popped is always the next repository. Subtrees that lie wholly before
`last` are never listed, and the walk stops once the page is full.

A page costs one `list` of each directory on the way to `last`, and one per repository or
intermediate directory it passes (plus those the `accept` filter turns down), whatever the
store holds: about `limit` listings for a caller who may read everything.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from ..layout import BLOBS_DIR, INDEX_FILE
from ..names import is_valid_name
from ..storage import PathNotFound
from .registry import Registry
from .store import Store


def _may_hold_after(path: str, last: str | None) -> bool:
    """Whether `path` or anything below it (`path/...`) sorts after `last`."""
    if last is None or path > last or last.startswith(f"{path}/"):
        return True
    return f"{path}/" > last


async def _store_page(registry: Registry, store: Store, last: str | None, limit: int,
                      accept: Callable[[str], bool] | None) -> list[str]:
    """Up to `limit` repositories of `store` after `last`, in order, that `accept` admits."""
    found: list[str] = []
    heap = [""]
    while heap and len(found) < limit:
        path = heapq.heappop(heap)
        try:
            children = await store.driver.list(path)
        except PathNotFound:
            continue
        marked = INDEX_FILE in children
        if (marked and path and (last is None or path > last) and is_valid_name(path)
                and (accept is None or accept(path))):
            found.append(path)
        for child in children:
            sub = child[:-1]
            if not child.endswith("/") or sub.startswith(".") or (marked and sub == BLOBS_DIR):
                continue
            full = f"{path}/{sub}" if path else sub
            if registry.routes_to(full, store) and _may_hold_after(full, last):
                heapq.heappush(heap, full)
    return found


async def repository_page(registry: Registry, last: str | None, limit: int,
                          accept: Callable[[str], bool] | None = None) -> tuple[list[str], bool]:
    """The catalog's repositories after `last` (sorted, each from the store it routes to) that
    `accept` admits: at most `limit` of them, and whether more follow."""
    limit = max(limit, 1)
    names: list[str] = []
    for store in registry.stores.values():
        names.extend(await _store_page(registry, store, last, limit + 1, accept))
    names.sort()
    return names[:limit], len(names) > limit
