"""Redis leases for stores that have no place of their own to keep a lock (S3).

A lease is a key set with a token and a short TTL, renewed while held, released only by its
owner.  Three things make Redis trouble cost seconds, never an acknowledged write:

- *No fallback.* When Redis cannot be reached, `hold` raises `LocksUnavailable` (a 503 for a
  client): a lock only this host can see would let two replicas write one index.
- *A circuit breaker.* After a failure, calls fail at once for a cool-down (doubling up to
  `MAX_COOLDOWN`), so a hung Redis costs one socket timeout, not one per lock.
- *Leases are watched.* A renewal that finds the key gone or taken, or renewals failing for
  two thirds of the TTL, mark the lease lost; its holder's `check()` then refuses the write.
- *Nothing is left held.* A release Redis missed (refused by the open breaker, or timed out),
  and an acquire it may have applied after its client gave up (a hung Redis runs the commands
  it had read once it goes on), are released again as soon as Redis answers: a hiccup must not
  block those names until their TTL runs out.  Each release checks its token, so a name
  another holder has taken since is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .lease import Lease, LocksUnavailable, LockTimeout
from .redis_clients import LoopClients

log = logging.getLogger("ocistore.locks")

LEASE_TTL = 6.0
SOCKET_TIMEOUT = 1.0
MIN_COOLDOWN, MAX_COOLDOWN = 0.5, 8.0
MAX_MISSED = 10_000  # releases kept for Redis's return; past that, they expire within one TTL
# Any answer but the script's: unreachable, timed out, or refused (a read-only replica after a
# failover, out of memory, MISCONF). None of them may let a write go on.
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)
# A lease is trusted for this part of its TTL from when its last renewal was *sent*: the rest
# is the margin for clocks and for the time the answer took to come back.
TRUSTED_PART = 5 / 6

# Idempotent, so a call retried on a fresh connection (after a Redis restart left a stale
# pooled one) never waits for a lock it already took.
_ACQUIRE = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class Breaker:
    """Open after a failure: callers are refused at once until the cool-down ends.

    The cool-down doubles with each failed probe (a call sent after the breaker last opened),
    never with the calls an outage caught in flight: under load a dozen of them fail together,
    and counting each would refuse writes for MAX_COOLDOWN after a blip of a moment.
    """

    def __init__(self) -> None:
        self._open_until = 0.0
        self._opened_at = float("-inf")
        self._cooldown = MIN_COOLDOWN
        self._down_since: float | None = None

    def check(self) -> None:
        if time.monotonic() < self._open_until:
            raise LocksUnavailable("redis unreachable")

    def failed(self, exc: BaseException, sent: float) -> None:
        """A call sent at `sent` (monotonic) failed."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.error("redis unreachable (%s): writes answer 503 until it is back; pulls go on", exc)
        if sent < self._opened_at:
            return  # sent before the breaker opened: the failure that opened it, seen again
        self._opened_at = now
        self._open_until = now + self._cooldown
        self._cooldown = min(self._cooldown * 2, MAX_COOLDOWN)

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.warning("redis reachable again after %.1fs: writes resume", time.monotonic() - self._down_since)
            self._down_since = None
        self._cooldown = MIN_COOLDOWN


class RedisLocks:
    def __init__(self, url: str, ttl: float = LEASE_TTL, prefix: str = "ocistore:") -> None:
        self._ttl_ms = int(ttl * 1000)
        self._prefix = prefix
        self._breaker = Breaker()
        self._clients = LoopClients(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            # A refused connection is retried once on a fresh one; a timeout never is.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            retry_on_error=[redis.exceptions.ConnectionError],
            health_check_interval=5)
        self._missed: dict[str, str] = {}  # key -> token: to release once Redis answers again
        self._releasing: set[asyncio.Task[None]] = set()

    def _client(self) -> Any:
        return self._clients.get()

    async def _call(self, script: str, key: str, *args: Any, undo: str | None = None) -> int:
        """Run a script; with `undo`, a failure after it was sent leaves that token to release
        (Redis may yet apply the script)."""
        self._breaker.check()
        sent = time.monotonic()
        try:
            answer = await self._client().eval(script, 1, key, *args)
        except REDIS_ERRORS as exc:
            self._breaker.failed(exc, sent)
            if undo is not None:
                self._miss(key, undo)
            raise LocksUnavailable(str(exc)) from None
        self._answered()
        return int(answer)

    def _miss(self, key: str, token: str) -> None:
        if len(self._missed) < MAX_MISSED:
            self._missed[key] = token

    def _answered(self) -> None:
        """Redis answered: close the breaker, and send the releases it missed (in the background)."""
        self._breaker.succeeded()
        if not self._missed:
            return
        missed, self._missed = list(self._missed.items()), {}
        task = asyncio.get_running_loop().create_task(self._release_missed(missed))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_missed(self, missed: list[tuple[str, str]]) -> None:
        for n, (key, token) in enumerate(missed):
            try:
                await self._call(_RELEASE, key, token)
            except LocksUnavailable:
                for later_key, later_token in missed[n:]:
                    self._miss(later_key, later_token)
                return

    @asynccontextmanager
    async def hold(self, name: str, wait: float | None = None) -> AsyncIterator[Lease]:
        key, token = f"{self._prefix}lock:{name}", uuid.uuid4().hex
        deadline = None if wait is None else time.monotonic() + wait
        pause = 0.001
        while True:
            sent = time.monotonic()
            if await self._call(_ACQUIRE, key, token, self._ttl_ms, undo=token):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(name)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        lease = Lease(name, sent + self._ttl_ms / 1000 * TRUSTED_PART)
        renewer = asyncio.create_task(self._renew(key, token, lease))
        try:
            yield lease
        finally:
            renewer.cancel()
            try:
                await self._call(_RELEASE, key, token)
            except LocksUnavailable:
                self._miss(key, token)  # released once Redis answers, or it expires within one TTL

    async def _renew(self, key: str, token: str, lease: Lease) -> None:
        """Renew every third of the TTL, moving `valid_until` on from when each renewal was
        sent; a renewal that finds the key not ours, or no renewal in time, loses the lease."""
        ttl = self._ttl_ms / 1000
        while True:
            await asyncio.sleep(ttl / 3)
            sent = time.monotonic()
            try:
                ours = await self._call(_RENEW, key, token, self._ttl_ms)
            except LocksUnavailable:
                ours = 1 if lease.valid_until is not None and time.monotonic() < lease.valid_until else 0
            else:
                if ours:
                    lease.valid_until = sent + ttl * TRUSTED_PART
            if not ours:
                lease.lost = True
                log.error("lease %s lost while held: the write it protects will be refused", lease.name)
                return

    async def forget(self, name: str) -> None:
        return None  # a released key is gone already

    async def try_claim(self, name: str, ttl: float) -> bool:
        """False when Redis is unreachable: the claimed work waits for its next turn."""
        sent = time.monotonic()
        try:
            self._breaker.check()
            claimed = await self._client().set(f"{self._prefix}claim:{name}", "1", nx=True, px=int(ttl * 1000))
        except LocksUnavailable:
            return False
        except REDIS_ERRORS as exc:
            self._breaker.failed(exc, sent)
            return False
        self._answered()
        return bool(claimed)

    async def release_claim(self, name: str) -> None:
        sent = time.monotonic()
        try:
            self._breaker.check()
            await self._client().delete(f"{self._prefix}claim:{name}")
        except LocksUnavailable:
            pass
        except REDIS_ERRORS as exc:
            self._breaker.failed(exc, sent)
