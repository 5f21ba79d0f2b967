"""When each tag was pushed and each manifest last pulled: what retention's rules ask about.

A pull must stay a read, so nothing is written per request: `record_push`/`record_pull`
only note the time in memory, and `flush` (every FLUSH_INTERVAL, and when the process
stops) merges what piled up into the shared record, one write per repository touched.

The record lives outside the layouts, so a layout stays plain OCI:
- in the store, `.ocistore/stats/<repo>/_stats.json` (no repository component starts
  with `_`, so no repository's name can collide with it), merged under the
  repository's `stats:` lock;
- with Redis configured, in a hash per repository that every replica merges into with
  one script (no storage write per flush). GC's pass copies the hash into the store's
  file, so a Redis that loses its data loses only the pulls since the last pass.

Every merge keeps the later of two times, so replicas and restarts never move a time back.
Keys are tags (their push) and digests (a manifest's push and last pull, whatever
reference it was pulled by, as zot's metaDB keeps them).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from . import jsondoc
from .locks import Locks
from .redis_clients import LoopClients
from .storage import PathNotFound, StorageDriver

log = logging.getLogger("ocistore.statistics")

FLUSH_INTERVAL = 5.0
MAX_RECORD_BYTES = 256 << 20  # as an index.json may be: two times per tag and digest
STATS_DIR = ".ocistore/stats"
# (pushed, pulled), seconds since the epoch; 0.0: never seen.
Times = tuple[float, float]

# Merge ARGV pairs (field, "pushed pulled") into the hash, keeping the later of each time.
_MERGE = """
for i = 1, #ARGV, 2 do
  local new = ARGV[i + 1]
  local old = redis.call('hget', KEYS[1], ARGV[i])
  if old then
    local op, ol = string.match(old, '([^ ]+) ([^ ]+)')
    local np, nl = string.match(new, '([^ ]+) ([^ ]+)')
    new = math.max(tonumber(op), tonumber(np)) .. ' ' .. math.max(tonumber(ol), tonumber(nl))
  end
  redis.call('hset', KEYS[1], ARGV[i], new)
end
return 1
"""


def merge(into: dict[str, Times], other: dict[str, Times]) -> bool:
    """Keep the later of each time; whether `into` changed."""
    changed = False
    for ref, (pushed, pulled) in other.items():
        old = into.get(ref)
        new = (pushed, pulled) if old is None else (max(old[0], pushed), max(old[1], pulled))
        if new != old:
            into[ref] = new
            changed = True
    return changed


def stats_path(repo: str) -> str:
    return f"{STATS_DIR}/{repo}/_stats.json"


def _parse(data: bytes) -> dict[str, Times]:
    """A record that does not parse counts as empty: statistics guide retention, and a
    tag with none is kept (zot's rule), so a damaged file never makes GC remove more."""
    try:
        refs = jsondoc.loads(data, max_bytes=MAX_RECORD_BYTES)["refs"]
        return {str(k): (float(v[0]), float(v[1])) for k, v in refs.items()}
    except (jsondoc.DocumentError, KeyError, TypeError, IndexError, AttributeError, ValueError):
        log.warning("a statistics record does not parse; treating it as empty")
        return {}


@dataclass(frozen=True)
class RefTimes:
    """What retention reads of one reference: None where nothing was recorded."""

    pushed: float | None
    pulled: float | None


class RepoStatistics:
    def __init__(self, refs: dict[str, Times]) -> None:
        self.refs = refs

    def of_tag(self, tag: str, digest: str) -> RefTimes | None:
        """A tag's push is its own; its last pull is its manifest's. None: never recorded."""
        tag_times, digest_times = self.refs.get(tag), self.refs.get(digest)
        if tag_times is None and digest_times is None:
            return None
        pushed = (tag_times[0] if tag_times else 0.0) or (digest_times[0] if digest_times else 0.0)
        pulled = digest_times[1] if digest_times else 0.0
        return RefTimes(pushed or None, pulled or None)

    def of_digest(self, digest: str) -> RefTimes | None:
        times = self.refs.get(digest)
        return None if times is None else RefTimes(times[0] or None, times[1] or None)


class Statistics:
    """One store's recorder, and the reader GC uses."""

    def __init__(self, driver: StorageDriver, locks: Locks, redis_url: str | None = None,
                 key_prefix: str = "ocistore:stats") -> None:
        self.driver = driver
        self.locks = locks
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self._pending: dict[str, dict[str, Times]] = {}
        self._clients = LoopClients(redis_url, socket_timeout=5, socket_connect_timeout=2) if redis_url else None

    # -- recording: memory only ----------------------------------------------------------

    def _note(self, repo: str, ref: str, pushed: float, pulled: float) -> None:
        merge(self._pending.setdefault(repo, {}), {ref: (pushed, pulled)})

    def record_push(self, repo: str, digest: str, tags: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._note(repo, digest, now, 0.0)
        for tag in tags:
            self._note(repo, tag, now, 0.0)

    def record_pull(self, repo: str, digest: str, now: float | None = None) -> None:
        self._note(repo, digest, 0.0, time.time() if now is None else now)

    # -- the shared record ---------------------------------------------------------------

    def _redis(self) -> Any:
        assert self._clients is not None
        return self._clients.get()

    def _key(self, repo: str) -> str:
        return f"{self.key_prefix}:{repo}"

    async def flush(self) -> None:
        """Merge what was recorded since the last flush; what fails to merge is kept for the next."""
        pending, self._pending = self._pending, {}
        for repo, refs in pending.items():
            try:
                if self.redis_url:
                    args = [x for ref, (p, q) in refs.items() for x in (ref, f"{p:.3f} {q:.3f}")]
                    await self._redis().eval(_MERGE, 1, self._key(repo), *args)
                else:
                    await self._merge_file(repo, refs)
            except Exception as exc:  # a failed flush is retried, never lost
                log.warning("statistics of %s not recorded yet (%s); retrying", repo, exc)
                merge(self._pending.setdefault(repo, {}), refs)

    async def _read_file(self, repo: str) -> dict[str, Times]:
        try:
            return _parse(await self.driver.get_content(stats_path(repo)))
        except PathNotFound:
            return {}

    async def _merge_file(self, repo: str, refs: dict[str, Times], keep: set[str] | None = None) -> None:
        async with self.locks.hold(f"stats:{repo}") as lease:
            current = await self._read_file(repo)
            changed = merge(current, refs)
            if keep is not None:
                gone = current.keys() - keep
                for ref in gone:
                    del current[ref]
                changed = changed or bool(gone)
            if not changed:
                return
            lease.check()
            body = json.dumps({"refs": {k: [round(v[0], 3), round(v[1], 3)] for k, v in current.items()}},
                              separators=(",", ":"))
            await self.driver.put_content(stats_path(repo), body.encode())

    async def load(self, repo: str) -> RepoStatistics:
        """Everything recorded of `repo`, from every replica (what they have flushed)."""
        refs = await self._read_file(repo)
        if self.redis_url:
            stored = await self._redis().hgetall(self._key(repo))
            merge(refs, {k.decode(): _pair(v.decode()) for k, v in stored.items()})
        return RepoStatistics(refs)

    async def persist(self, repo: str, stats: RepoStatistics, keep: set[str]) -> None:
        """GC's pass: write what Redis holds into the store's file, and forget references
        that no longer exist (`keep`: the tags and digests the index still lists)."""
        await self._merge_file(repo, {k: v for k, v in stats.refs.items() if k in keep}, keep)
        if self.redis_url:
            gone = [k for k in stats.refs if k not in keep]
            if gone:
                await self._redis().hdel(self._key(repo), *gone)

    async def forget(self, repo: str) -> None:
        """A repository GC removed: its record goes too."""
        try:
            await self.driver.delete(stats_path(repo))
        except PathNotFound:
            pass
        if self.redis_url:
            await self._redis().delete(self._key(repo))

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()


def _pair(value: str) -> Times:
    pushed, pulled = value.split(" ", 1)
    return float(pushed), float(pulled)
