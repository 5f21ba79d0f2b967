"""`ocistore.ratelimit`: zot's limiters as per-client token buckets, on a clock of the test's own."""

from __future__ import annotations

import pytest

from ocistore.config.tls import RatelimitConfig
from ocistore.ratelimit import RateLimiter, TokenBuckets, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(raw: dict[str, object], clock: Clock, **kwargs: int) -> RateLimiter:
    return RateLimiter(RatelimitConfig.model_validate(raw), clock, **kwargs)


def test_a_burst_of_rate_requests_passes_then_one_more_waits_for_a_token() -> None:
    clock = Clock()
    rl = limiter({"rate": 4}, clock)
    assert [rl.check("GET", "10.0.0.1") for _ in range(4)] == [None] * 4
    refusal = rl.check("GET", "10.0.0.1")
    assert refusal is not None and (refusal.rate, refusal.method, refusal.retry_after) == (4, None, 1)
    assert "at most 4 requests a second" in refusal.describe()
    clock.now += 0.25  # one token back at 4 a second
    assert rl.check("GET", "10.0.0.1") is None
    assert rl.check("GET", "10.0.0.1") is not None


def test_each_client_has_its_own_bucket() -> None:
    clock = Clock()
    rl = limiter({"rate": 1}, clock)
    assert rl.check("GET", "10.0.0.1") is None
    assert rl.check("GET", "10.0.0.1") is not None
    assert rl.check("GET", "10.0.0.2") is None


def test_a_method_limit_counts_only_its_method_after_the_limit_on_all() -> None:
    clock = Clock()
    rl = limiter({"rate": 10, "methods": [{"method": "PUT", "rate": 1}]}, clock)
    assert rl.check("PUT", "c") is None
    refusal = rl.check("PUT", "c")
    assert refusal is not None and (refusal.method, refusal.rate) == ("PUT", 1)
    assert "at most 1 PUT requests a second" in refusal.describe()
    # GETs pass the PUT limit by; the refused PUT took a token from the limit on all, as in zot's chain.
    assert [rl.check("GET", "c") for _ in range(8)] == [None] * 8
    assert rl.check("GET", "c") is not None


def test_only_method_limits_leave_other_methods_alone() -> None:
    rl = limiter({"methods": [{"method": "HEAD", "rate": 2}]}, Clock())
    assert all(rl.check("GET", "c") is None for _ in range(100))
    assert [rl.check("HEAD", "c") is None for _ in range(3)] == [True, True, False]


def test_retry_after_is_whole_seconds_until_a_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=0.25, burst=1)
    assert buckets.take("c", clock.now) == 0.0
    assert buckets.take("c", clock.now + 1) == pytest.approx(3.0)
    rl = limiter({"rate": 1}, clock)
    rl.check("GET", "c")
    clock.now += 0.9
    refusal = rl.check("GET", "c")
    assert refusal is not None and refusal.retry_after == 1  # 0.1 s, rounded up to the header's whole second


def test_buckets_that_refilled_are_forgotten_and_the_count_is_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=2, max_keys=3)
    for client in ("a", "b", "c"):
        buckets.take(client, clock.now)
    assert len(buckets) == 3
    buckets.take("d", clock.now)
    assert len(buckets) == 3 and "a" not in buckets.buckets  # least recently used went
    buckets.take("e", clock.now + 1.0)  # 1 s at 2/s refills every bucket: all of them are like new
    assert list(buckets.buckets) == ["e"]


@pytest.mark.parametrize(("address", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
    (None, ""),
])
def test_clients_are_keyed_by_address_ipv6_by_its_64(address: str | None, key: str) -> None:
    assert client_key(address) == key
