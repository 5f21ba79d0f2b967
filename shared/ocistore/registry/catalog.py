"""Repository discovery: a directory holding `index.json` is a repository.

Layouts nest (`a` and `a/b` are both repositories), so the walk descends into every
directory except the layout's own `blobs` and `.uploads`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..layout import BLOBS_DIR, INDEX_FILE, LAYOUT_FILE
from ..names import is_valid_name
from ..storage import PathNotFound
from .registry import Registry
from .store import Store

_LAYOUT_ENTRIES = frozenset({BLOBS_DIR, INDEX_FILE, LAYOUT_FILE})


async def list_repositories(store: Store) -> AsyncIterator[str]:
    """Every repository of the store, in no particular order."""
    stack = [""]
    while stack:
        prefix = stack.pop()
        try:
            children = await store.driver.list(prefix)
        except PathNotFound:
            continue
        is_layout = INDEX_FILE in children
        if is_layout and prefix and is_valid_name(prefix):
            yield prefix
        for child in children:
            if is_layout and child in _LAYOUT_ENTRIES:
                continue
            path = f"{prefix}/{child}" if prefix else child
            # The grammar also leaves out `.uploads`, temp files and anything foreign.
            if is_valid_name(path):
                try:
                    info = await store.driver.stat(path)
                except PathNotFound:
                    continue
                if info.is_dir:
                    stack.append(path)


async def catalog(registry: Registry) -> list[str]:
    """Repositories of every store, each listed only by the store it routes to."""
    names: list[str] = []
    for store in registry.stores.values():
        names.extend([r async for r in list_repositories(store) if registry.routes_to(r, store)])
    return names
