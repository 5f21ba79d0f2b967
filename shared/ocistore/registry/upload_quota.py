"""Bounds on open upload sessions, per repository and per store.

A session is a file until it is finished, cancelled or reaped, so a client opening sessions
in a loop would fill a store's inodes.  Listing storage on every POST to count them would
add a round trip to every push; instead each process counts the sessions it opened and saw
end, and only when a count reaches its bound is storage listed (the truth, whichever replica
opened or ended them), sessions idle past `uploadIdleTimeout` reaped, and the count reset.
A request still past the bound then gets 429 TOOMANYREQUESTS.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

# A store-wide recount walks every repository: at most this often, however hard it is pushed.
TOTAL_RECOUNT_EVERY = 5.0


@dataclass(frozen=True)
class Mark:
    """Taken before a listing: sessions being created then, and how many had begun by then."""

    creating: int
    begun: int


class UploadQuota:
    """This process's view of how many sessions are open; storage is the authority.

    A listing misses the sessions this process is still creating, and those it starts while
    the listing runs: a recount adds both (from a `Mark` taken before listing), so it may
    count a session twice but never misses one, and concurrent POSTs cannot pass a bound.
    """

    def __init__(self, per_repository: int, total: int) -> None:
        self.per_repository = per_repository
        self.total = total
        self._open: Counter[str] = Counter()
        self._sum = 0
        self._creating: Counter[str] = Counter()
        self._begun: Counter[str] = Counter()
        self._total_recounted = float("-inf")

    def opened(self, repo: str) -> None:
        """A session is being created (counted at once, before any await)."""
        self._open[repo] += 1
        self._sum += 1
        self._creating[repo] += 1
        self._begun[repo] += 1

    def created(self, repo: str) -> None:
        """The session `opened` announced is on storage now (or failed, and `closed` follows)."""
        self._creating[repo] -= 1
        if self._creating[repo] <= 0:
            del self._creating[repo]

    def closed(self, repo: str) -> None:
        if self._open[repo] > 0:
            self._open[repo] -= 1
            self._sum -= 1
        if self._open[repo] == 0:
            del self._open[repo]

    def repository_full(self, repo: str) -> bool:
        return self._open[repo] >= self.per_repository

    def store_full(self) -> bool:
        return self._sum >= self.total

    def mark(self, repo: str | None = None) -> Mark:
        if repo is None:
            return Mark(sum(self._creating.values()), sum(self._begun.values()))
        return Mark(self._creating[repo], self._begun[repo])

    def recounted(self, repo: str, listed: int, mark: Mark) -> None:
        """Storage listed `listed` sessions of `repo`, the listing having begun at `mark`."""
        count = listed + mark.creating + (self._begun[repo] - mark.begun)
        self._sum += count - self._open[repo]
        self._open[repo] = count
        if count == 0:
            del self._open[repo]

    def may_recount_store(self) -> bool:
        now = time.monotonic()
        if now - self._total_recounted < TOTAL_RECOUNT_EVERY:
            return False
        self._total_recounted = now
        return True

    def store_recounted(self, counts: dict[str, int], mark: Mark) -> None:
        """Storage holds these sessions, by repository, listed from `mark` on."""
        self._open = Counter({repo: n for repo, n in counts.items() if n})
        unlisted = mark.creating + (sum(self._begun.values()) - mark.begun)
        self._sum = sum(self._open.values()) + unlisted
