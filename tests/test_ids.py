"""Job ids as text: the ids the broker makes, and the bulk check a Settle's acks go through
agrees with the one-by-one one."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_broker import ids
from forge_broker.ids import all_canonical, canonical, uuid7s

_canonical_ids = st.uuids().map(str)
# Near misses: one character of a canonical id replaced, dropped or doubled, or case changed.
_near_misses = st.tuples(_canonical_ids, st.integers(0, 35), st.characters()).map(
    lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]) | _canonical_ids.map(str.upper) | \
    st.tuples(_canonical_ids, st.integers(0, 35)).map(lambda t: t[0][:t[1]] + t[0][t[1] + 1:]) | \
    st.tuples(_canonical_ids, st.integers(0, 35)).map(lambda t: t[0][:t[1]] + t[0][t[1]:] * 2)


@given(st.lists(_canonical_ids | _near_misses | st.text(max_size=40), max_size=50))
def test_all_canonical_agrees_with_checking_each_id(values: list[str]) -> None:
    assert all_canonical(values) == all(canonical(v) == v for v in values)


def test_ids_that_only_line_up_when_joined_are_not_canonical() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    assert all_canonical([a, b])
    assert not all_canonical([a[:-1], a[-1] + b])  # the same text, cut in the wrong place


def test_made_ids_are_canonical_version_7_and_increase_across_calls() -> None:
    made = [i for n in (1, 1000, 3, 250, 1) * 20 for i in uuid7s(n)]
    assert all_canonical(made)
    assert {(uuid.UUID(i).version, uuid.UUID(i).variant) for i in made} == {(7, uuid.RFC_4122)}
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_made_ids_carry_the_millisecond_they_were_made_in() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7s(10)
    after = time.time_ns() // 1_000_000
    assert {int(i.replace("-", "")[:12], 16) for i in made} <= set(range(before, after + 1))


def test_calls_beyond_the_counter_of_one_millisecond_keep_their_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """More calls than the 12-bit counter holds within one millisecond (a stopped clock here)
    borrow the next millisecond rather than wrap."""
    for name in ("_last_ms", "_counter"):  # put back afterwards: later ids follow the clock
        monkeypatch.setattr(ids, name, getattr(ids, name))
    monkeypatch.setattr(ids.time, "time_ns", lambda: 4_102_444_800_000 * 1_000_000)
    made = [i for _ in range(5000) for i in uuid7s(2)]
    assert made == sorted(made) and len(set(made)) == len(made)
