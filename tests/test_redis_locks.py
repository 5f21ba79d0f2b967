"""Redis leases against a real redis-server: they exclude across replicas (separate clients),
never fall back to a lock the others cannot see, notice when they are lost, and make a hung
or stopped Redis cost one timeout rather than one per lock."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from ocistore.locks import LeaseLost, LocksUnavailable, LockTimeout
from ocistore.redis_locks import MIN_COOLDOWN, SOCKET_TIMEOUT, RedisLocks
from tests.servers import RedisServer, running_redis

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own: it is stopped, frozen and restarted."""
    with running_redis(tmp_path) as server:
        yield server


def test_a_lease_excludes_another_replica(own_redis: RedisServer) -> None:
    a, b = RedisLocks(own_redis.url), RedisLocks(own_redis.url)

    async def scenario() -> None:
        async with a.hold("index:r"):
            with pytest.raises(LockTimeout):
                async with b.hold("index:r", wait=0.3):
                    pass
        async with b.hold("index:r", wait=1.0):
            pass
    run(scenario())


def test_a_lease_outlives_its_ttl_while_renewed(own_redis: RedisServer) -> None:
    # A TTL of 2 s renews every 0.67 s: only a stall of the whole process past 1.3 s (which a
    # loaded 2-core CI machine gave a 0.6 s TTL) lets the key expire between two renewals.
    locks = RedisLocks(own_redis.url, ttl=2.0)
    other = RedisLocks(own_redis.url, ttl=2.0)

    async def scenario() -> None:
        async with locks.hold("index:r") as lease:
            await asyncio.sleep(6.0)  # the work under the lease, three TTLs long
            lease.check()
            with pytest.raises(LockTimeout):
                async with other.hold("index:r", wait=0.1):
                    pass
    run(scenario())


def test_a_lease_taken_away_is_noticed_and_refuses_the_write(own_redis: RedisServer) -> None:
    locks = RedisLocks(own_redis.url, ttl=0.6)
    direct = redis.Redis.from_url(own_redis.url)

    async def scenario() -> None:
        async with locks.hold("index:r") as lease:
            direct.delete("ocistore:lock:index:r")  # expired, or taken over by another holder
            deadline = time.monotonic() + 5
            while not lease.lost:
                assert time.monotonic() < deadline, "a lost lease went unnoticed"
                await asyncio.sleep(0.05)
            with pytest.raises(LeaseLost):
                lease.check()
    run(scenario())


def test_with_redis_down_writes_are_refused_not_given_a_host_lock(own_redis: RedisServer) -> None:
    locks = RedisLocks(own_redis.url)
    own_redis.stop()

    async def scenario() -> None:
        with pytest.raises(LocksUnavailable) as refused:
            async with locks.hold("index:r"):
                pytest.fail("a write went on without exclusion")
        assert refused.value.status == 503 and "Retry-After" in refused.value.headers
        assert not await locks.try_claim("gc:sweep", 10)
    run(scenario())


def test_a_hung_redis_costs_one_timeout_not_one_per_lock(own_redis: RedisServer) -> None:
    locks = RedisLocks(own_redis.url)
    run(locks.try_claim("warm-up", 1))
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        async def scenario() -> float:
            started = time.monotonic()
            for i in range(20):
                with pytest.raises(LocksUnavailable):
                    async with locks.hold(f"index:r{i}"):
                        pass
            return time.monotonic() - started
        # One socket timeout, then the breaker refuses at once (not 20 timeouts).
        assert run(scenario()) < 3 * SOCKET_TIMEOUT
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)


def test_an_outage_found_by_many_calls_at_once_costs_the_first_cooldown_only(own_redis: RedisServer) -> None:
    """The cool-down doubles with each failed probe, not with each call the outage caught in
    flight: under load, a Redis restart of a moment must not refuse writes for MAX_COOLDOWN."""
    locks = RedisLocks(own_redis.url)
    run(locks.try_claim("warm-up", 1))
    own_redis.stop()

    async def scenario() -> float:
        async def refused(i: int) -> None:
            with pytest.raises(LocksUnavailable):
                async with locks.hold(f"index:r{i}"):
                    pass
        await asyncio.gather(*(refused(i) for i in range(8)))  # all sent before the first fails
        own_redis.start()
        back = time.monotonic()
        while True:
            try:
                async with locks.hold("index:r", wait=1.0):
                    return time.monotonic() - back
            except LocksUnavailable:
                assert time.monotonic() - back < 15, "locks never came back after Redis did"
                await asyncio.sleep(0.02)
    waited = run(scenario())
    assert waited < MIN_COOLDOWN + 0.5, f"locks came back {waited:.1f}s after Redis did"


def test_a_release_redis_missed_is_made_once_it_answers_again(own_redis: RedisServer) -> None:
    """A lease released while Redis hung is released for real once Redis answers: its name is
    free again at once, not one TTL later (a hiccup must not stall a repository's tags for 6 s)."""
    holder, other = RedisLocks(own_redis.url), RedisLocks(own_redis.url)
    proc = own_redis.proc
    assert proc is not None

    async def scenario() -> float:
        async with holder.hold("index:r"):
            os.kill(proc.pid, signal.SIGSTOP)
            # Another request of the holder's process times out: the breaker opens, so the
            # release below is refused before it is even sent.
            assert not await holder.try_claim("other", 1)
        os.kill(proc.pid, signal.SIGCONT)
        back = time.monotonic()
        n = 0
        while not await holder.try_claim(f"probe-{n}", 1):  # refused while the breaker is open
            n += 1
            assert time.monotonic() - back < 15, "the holder never reached Redis again"
            await asyncio.sleep(0.05)
        async with other.hold("index:r", wait=15):
            return time.monotonic() - back
    try:
        waited = run(scenario())
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert waited < MIN_COOLDOWN + 1.0, f"the lock was free again only {waited:.1f}s after Redis answered"


def test_locks_work_again_once_redis_is_back(own_redis: RedisServer) -> None:
    locks = RedisLocks(own_redis.url)

    async def scenario() -> None:
        async with locks.hold("index:r"):
            pass
        own_redis.restart()  # pooled connections are now stale
        deadline = time.monotonic() + 15
        while True:
            try:
                async with locks.hold("index:r", wait=1.0) as lease:
                    lease.check()
                return
            except LocksUnavailable:
                assert time.monotonic() < deadline, "locks never came back after Redis did"
                await asyncio.sleep(0.1)
    run(scenario())


def test_a_lease_is_not_trusted_past_its_ttl_even_if_the_renewer_never_ran(own_redis: RedisServer) -> None:
    """An event loop stalled longer than the TTL (the renewer had no turn): the key may have
    expired and been taken by another replica, so the write must be refused."""
    locks = RedisLocks(own_redis.url, ttl=0.6)

    async def scenario() -> None:
        async with locks.hold("index:r") as lease:
            time.sleep(1.0)  # noqa: ASYNC251 - blocking the loop is the stall under test
            with pytest.raises(LeaseLost):
                lease.check()
    run(scenario())


def test_a_redis_that_refuses_renewals_loses_the_lease(own_redis: RedisServer) -> None:
    """A replica promoted read-only after a failover answers errors, not timeouts."""
    locks = RedisLocks(own_redis.url, ttl=0.6)
    direct = redis.Redis.from_url(own_redis.url)

    async def scenario() -> None:
        async with locks.hold("index:r") as lease:
            direct.config_set("min-replicas-to-write", 1)  # every write now answers NOREPLICAS
            try:
                deadline = time.monotonic() + 5
                while not lease.lost:
                    assert time.monotonic() < deadline, "renewals refused, yet the lease was trusted"
                    await asyncio.sleep(0.05)
                with pytest.raises(LeaseLost):
                    lease.check()
            finally:
                direct.config_set("min-replicas-to-write", 0)
    run(scenario())
