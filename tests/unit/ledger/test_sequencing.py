"""Stream positions and epoch fences, without a database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import LedgerInvariantError
from ledger.sequencing import Arrival, Gap, ShardState, StreamState


def test_next_gap_fill_and_duplicate() -> None:
    stream = StreamState()
    assert stream.observe(1) == (Arrival.NEXT, None)
    assert stream.observe(5) == (Arrival.AFTER_GAP, Gap(2, 4))
    assert stream.observe(3) == (Arrival.FILLS_HOLE, None)
    assert stream.holes == [(2, 2), (4, 4)]
    assert stream.observe(3) == (Arrival.DUPLICATE, None)
    assert stream.observe(5) == (Arrival.DUPLICATE, None)
    assert stream.observe(2) == (Arrival.FILLS_HOLE, None)
    assert stream.observe(4) == (Arrival.FILLS_HOLE, None)
    assert stream.holes == []
    with pytest.raises(LedgerInvariantError):
        stream.observe(0)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=120))
def test_any_delivery_order_admits_each_seq_exactly_once(deliveries: list[int]) -> None:
    stream = StreamState()
    admitted = [seq for seq in deliveries if stream.observe(seq)[0] is not Arrival.DUPLICATE]
    assert sorted(admitted) == sorted(set(deliveries))
    missing = {seq for first, last in stream.holes for seq in range(first, last + 1)}
    assert missing == set(range(1, stream.seq_last + 1)) - set(deliveries)


def test_older_epochs_are_fenced_off() -> None:
    shard = ShardState()
    assert shard.admits(1)
    assert shard.admits(3)
    assert not shard.admits(2)
    assert shard.admits(3)
    assert shard.epoch == 3


@given(
    seen=st.lists(st.integers(min_value=1, max_value=30), max_size=20),
    first=st.integers(min_value=1, max_value=35),
    length=st.integers(min_value=0, max_value=5),
)
def test_a_run_is_taken_whole_exactly_when_observing_it_finds_every_seq_next(
    seen: list[int], first: int, length: int
) -> None:
    extended, observed = StreamState(), StreamState()
    for seq in seen:
        extended.observe(seq)
        observed.observe(seq)
    holes_before = list(extended.holes)
    arrivals = [observed.observe(seq)[0] for seq in range(first, first + length)]
    taken = extended.extend(first, first + length - 1)
    assert taken == (length > 0 and all(arrival is Arrival.NEXT for arrival in arrivals))
    if taken:
        assert (extended.seq_last, extended.holes, extended.changed) == (
            observed.seq_last,
            holes_before,
            True,
        )
