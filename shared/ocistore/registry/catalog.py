"""The catalog: repositories in name order, read page by page from each store's repository index.

A directory holding `index.json` is a repository; layouts nest (`a` and `a/b` are both), so
the walks that build and verify the index descend into every directory except a layout's own
`blobs` and `.uploads`. No request walks a store: a page reads about `limit` names from each
store's index (more when a reader's filter turns names down).
"""

from __future__ import annotations

from collections.abc import Callable

from ..names import is_valid_name
from .registry import Registry
from .store import Store


async def list_layouts(store: Store) -> list[str]:
    """What GC and scrub look at, in order: every repository, and every name that holds blobs
    or upload sessions without ever having received a manifest (its blobs are served too)."""
    return sorted(d for d in await store.walk_layouts() if is_valid_name(d))


async def _store_page(registry: Registry, store: Store, last: str | None, limit: int | None,
                      accept: Callable[[str], bool] | None) -> list[str]:
    """Up to `limit` (None: all) names of `store`'s index after `last` that route to it and
    that `accept` admits, in order."""
    await store.repositories.ensure_built()
    found: list[str] = []
    cursor = last
    while limit is None or len(found) < limit:
        batch = await store.repositories.after(cursor, None if limit is None else max(limit, 100))
        found.extend(n for n in batch if registry.routes_to(n, store) and (accept is None or accept(n)))
        if limit is None or not batch or len(batch) < max(limit, 100):
            break
        cursor = batch[-1]
    return found if limit is None else found[:limit]


async def catalog_page(registry: Registry, last: str | None, limit: int | None,
                       accept: Callable[[str], bool] | None = None) -> tuple[list[str], bool]:
    """The repositories after `last` (sorted, each from the store it routes to) that `accept`
    admits: at most `limit` of them (all with None), and whether more follow."""
    want = None if limit is None else limit + 1
    names: list[str] = []
    for store in registry.stores.values():
        names.extend(await _store_page(registry, store, last, want, accept))
    names.sort()
    if limit is None:
        return names, False
    return names[:limit], len(names) > limit
