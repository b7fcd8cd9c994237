"""Job ids as text: the bulk check a Settle's acks go through agrees with the one-by-one one."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from forge_broker.ids import all_canonical, canonical

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
