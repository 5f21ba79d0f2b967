"""zot's `http.ratelimit` as token buckets, one per client address (pure; the API applies it).

What zot does (tollbooth v7 under gorilla/mux, pkg/api/session.go): a limiter of `rate`
requests a second for every request, then one per entry of `methods` for requests of that
method, each a token bucket (golang.org/x/time/rate) holding at most `rate` tokens (burst =
rate, at least 1), kept **per client**, not globally. A request goes through the limiters in
that order, each taking a token, and the first one without a token refuses it (429).

Where ocistore differs, deliberately:
- tollbooth names a client by the last `X-Forwarded-For` entry, else `X-Real-IP`, else the
  connection's address. Any client can write those headers and so get a fresh bucket with
  every request; ocistore uses the connection's address only. IPv6 clients share a bucket
  per /64, as in tollbooth (one host usually holds a whole /64); an IPv4-mapped address
  counts as its IPv4 address.
- tollbooth's key also holds the URL path, so a client gets `rate` requests a second *per
  path*: a pull of new tags or blobs, each at another path, is never limited. ocistore
  counts every request of a client together, as the key's name (`rate`, requests per second)
  says.
- tollbooth keeps every bucket it ever made; here a bucket that has refilled is forgotten
  (it is the same as a new one), and at most MAX_CLIENTS are kept, least recently used first
  to go.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .config.tls import RatelimitConfig

MAX_CLIENTS = 100_000


class TokenBuckets:
    """One token bucket per key: `rate` tokens a second, holding at most `burst`."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_CLIENTS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a rate above 0 and room for at least one token")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.refill_time = burst / rate  # an untouched bucket is full again after this long
        # key -> (tokens, when counted), least recently used first
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Take a token for `key`: 0.0 when there was one, else the seconds until there is."""
        self._forget_full(now)
        tokens, then = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self.buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self.buckets) > self.max_keys:
            self.buckets.popitem(last=False)
        return wait

    def _forget_full(self, now: float) -> None:
        """Drop buckets untouched long enough to be full: they cost memory and mean nothing."""
        while self.buckets:
            _, (_, then) = next(iter(self.buckets.items()))
            if now - then < self.refill_time:
                return
            self.buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self.buckets)


@dataclass(frozen=True)
class Refusal:
    """A request over a limit: which one, and when to try again (whole seconds, Retry-After)."""

    rate: int
    method: str | None  # None: the limit on every request
    retry_after: int

    def describe(self) -> str:
        what = f"{self.method} requests" if self.method else "requests"
        return f"too many requests: at most {self.rate} {what} a second from one client"


@dataclass(frozen=True)
class _Limit:
    rate: int
    method: str | None
    buckets: TokenBuckets


class RateLimiter:
    """zot's limiters in zot's order, over per-client buckets."""

    def __init__(self, config: RatelimitConfig, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.clock = clock
        limits: list[tuple[int, str | None]] = [(config.rate, None)] if config.rate is not None else []
        limits += [(m.rate, m.method) for m in config.methods]
        self.limits = [_Limit(rate, method, TokenBuckets(rate, max(1, rate), max_clients))
                       for rate, method in limits]

    def __bool__(self) -> bool:
        return bool(self.limits)

    def check(self, method: str, client: str | None) -> Refusal | None:
        """Count a request of `method` from the address `client`; a Refusal if over a limit."""
        key = client_key(client)
        now = self.clock()
        for limit in self.limits:
            if limit.method is not None and limit.method != method:
                continue
            wait = limit.buckets.take(key, now)
            if wait > 0:
                return Refusal(limit.rate, limit.method, max(1, math.ceil(wait)))
        return None


def client_key(address: str | None) -> str:
    """The bucket a client address counts in: itself for IPv4, its /64 for IPv6."""
    if not address:
        return ""  # a Unix socket: every client is the same one
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
