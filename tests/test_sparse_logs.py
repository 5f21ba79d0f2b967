"""A recurring warning is logged once per interval, and the line that follows says how many
were held back: an operator sees the rate of a flood without the flood."""

from __future__ import annotations

from ocistore.logs import Sparse


def test_a_key_is_due_once_per_interval_and_counts_what_it_held_back() -> None:
    say = Sparse(every=3600.0)
    assert say.due("evict")
    assert [say.due("evict") for _ in range(3)] == [False, False, False]
    assert say.due("full")  # keys are independent
    assert say.missed("evict") == 3
    assert say.missed("evict") == 0  # counted once
    assert say.missed("full") == 0


def test_a_key_is_due_again_after_its_interval() -> None:
    say = Sparse(every=0.0)
    assert say.due("write-timeout")
    assert say.due("write-timeout")
    assert say.missed("write-timeout") == 0
