"""What holding a lock gives, and the ways having one can fail: the lock types every
implementation (file locks, Redis leases) shares."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .errors import ErrorCode, RegistryError


class LockTimeout(TimeoutError):
    """The lock stayed held by another owner for longer than the caller would wait."""


class LocksUnavailable(RegistryError):
    """Exclusion across replicas cannot be had now (Redis unreachable): a write must not go on."""

    def __init__(self, why: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, {"locks": why}, headers={"Retry-After": "5"},
                         message="writes are paused: the registry cannot reach its lock service")


class LeaseLost(RegistryError):
    """A lease ran out (or was taken over) while its holder worked: what it protected is abandoned."""

    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, {"lock": name}, headers={"Retry-After": "1"},
                         message="the lock protecting this write was lost, so it was not made: retry")


class Lease:
    """What holding a lock gives: `check()` before a write that must be exclusive.

    A lease that can expire carries `valid_until` (monotonic): the latest moment it is known
    to exclude others, whether or not its renewer has had a turn to notice otherwise.
    """

    __slots__ = ("lost", "name", "valid_until")

    def __init__(self, name: str, valid_until: float | None = None) -> None:
        self.name = name
        self.lost = False
        self.valid_until = valid_until

    def check(self) -> None:
        if self.lost or (self.valid_until is not None and time.monotonic() >= self.valid_until):
            self.lost = True
            raise LeaseLost(self.name)


class Locks(Protocol):
    def hold(self, name: str, wait: float | None = None) -> AbstractAsyncContextManager[Lease]:
        """Exclusive ownership of `name`; with `wait`, LockTimeout when not had within that many
        seconds (only the wait is bounded, never the body); LocksUnavailable when exclusion
        cannot be had at all."""
        ...

    async def forget(self, name: str) -> None:
        """Drop what a lock of a name that will never be used again keeps (an ended upload's)."""
        ...

    async def try_claim(self, name: str, ttl: float) -> bool: ...

    async def release_claim(self, name: str) -> None: ...
