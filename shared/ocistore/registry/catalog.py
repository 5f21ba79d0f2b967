"""Repository discovery: a directory holding `index.json` is a repository.

Layouts nest (`a` and `a/b` are both repositories), so the walk descends into every
directory except the layout's own `blobs` and `.uploads`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..names import is_valid_name
from .registry import Registry
from .store import Store


async def list_repositories(store: Store) -> AsyncIterator[str]:
    """Every repository of the store, in no particular order."""
    for path in await store.repository_walk.get():
        if is_valid_name(path):
            yield path


async def list_layouts(store: Store) -> list[str]:
    """What GC and scrub look at, in order: every repository, and every name that holds blobs
    or upload sessions without ever having received a manifest (its blobs are served too)."""
    return sorted(d for d in await store.walk_layouts() if is_valid_name(d))


async def catalog(registry: Registry) -> list[str]:
    """Repositories of every store, each listed only by the store it routes to."""
    names: list[str] = []
    for store in registry.stores.values():
        names.extend([r async for r in list_repositories(store) if registry.routes_to(r, store)])
    return names
