"""A memo of the most recently used entries, bounded by count and by an estimate of bytes.

A count alone bounds nothing: 40 parsed manifests of 4 MiB each took half a gigabyte.
Each entry therefore carries a cost (an estimate of the memory it holds, in bytes) and
the oldest entries go once the total passes the budget.  The newest entry is always kept,
even alone over budget, so one huge but busy item (a repository with 100k tags) is still
parsed once, not on every request.

Named "recent", not "cache": in this project a cache is the dedupe holder index only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.total = 0
        self._d: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: K) -> V | None:
        hit = self._d.get(key)
        if hit is None:
            return None
        self._d.move_to_end(key)
        return hit[0]

    def put(self, key: K, value: V, cost: int = 0) -> None:
        self.pop(key)
        self._d[key] = (value, cost)
        self.total += cost
        while len(self._d) > 1 and (
            len(self._d) > self.max_entries or (self.max_bytes is not None and self.total > self.max_bytes)
        ):
            _, (_, old_cost) = self._d.popitem(last=False)
            self.total -= old_cost

    def pop(self, key: K) -> V | None:
        hit = self._d.pop(key, None)
        if hit is None:
            return None
        self.total -= hit[1]
        return hit[0]
