"""Storage accounting: what the repositories hold, and what that costs on disk.

Logical bytes add up every blob of every repository; physical bytes count each stored
copy once (an inode on disk, an object elsewhere), so their difference is what dedupe
saves.  One walk of the store gives both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .registry.store import Store


@dataclass
class Usage:
    logical: int = 0
    physical: int = 0
    blobs: int = 0

    @property
    def saved(self) -> int:
        return self.logical - self.physical

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.logical + other.logical, self.physical + other.physical, self.blobs + other.blobs)

    def as_dict(self) -> dict[str, Any]:
        ratio = self.physical / self.logical if self.logical else 1.0
        return {"blobs": self.blobs, "logical_bytes": self.logical, "physical_bytes": self.physical,
                "saved_bytes": self.saved, "physical_to_logical": round(ratio, 4)}


@dataclass
class StoreUsage:
    total: Usage = field(default_factory=Usage)
    repositories: dict[str, Usage] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.total.as_dict(),
                "repositories": {name: u.as_dict() for name, u in sorted(self.repositories.items())}}


async def measure(store: Store, repo: str | None = None, progress: Callable[[int], None] | None = None,
                  on_total: Callable[[int], None] | None = None) -> StoreUsage:
    """`progress(1)` after each blob file counted; `on_total(files)` once they are listed."""
    out = StoreUsage()
    seen_store: set[str] = set()
    seen_repo: dict[str, set[str]] = {}
    blobs = store.blobs
    # The drivers list a whole walk before yielding any of it: keeping the list costs little.
    files = [entry async for entry in blobs.every_file(repo)]
    if on_total is not None:
        on_total(len(files))
    for name, digest, f in files:
        usage = out.repositories.setdefault(name, Usage())
        size = f.size
        if blobs.policy.is_placeholder(digest, f.size):
            # A reference costs nothing on its own; it holds the original's bytes.
            resolved = await blobs.resolve(digest, f.path, f)
            size = resolved.info.size if resolved else 0
        # Links share an inode; on S3 an ETag names content, not a copy, so each object counts.
        ident = f.ident if store.driver.supports_links and f.ident else f.path
        for u, seen in ((usage, seen_repo.setdefault(name, set())), (out.total, seen_store)):
            u.logical += size
            u.blobs += 1
            if ident not in seen:
                seen.add(ident)
                u.physical += f.size
        if progress is not None:
            progress(1)
    return out
