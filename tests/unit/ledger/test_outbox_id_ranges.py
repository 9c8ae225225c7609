"""Entry ids of an outbox batch as ranges (migration 0005): runs of consecutive ids."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from ledger.events_outbox import id_ranges, multirange_text


def test_blocks_of_ids_become_few_ranges() -> None:
    ids = [*range(1, 257), *range(513, 700), 900]
    assert id_ranges(ids) == [(1, 256), (513, 699), (900, 900)]
    assert multirange_text(id_ranges(ids)) == "{[1,256],[513,699],[900,900]}"


def test_order_and_repeats_do_not_matter() -> None:
    assert id_ranges([5, 3, 4, 4, 10]) == [(3, 5), (10, 10)]
    assert id_ranges([]) == []


@given(st.sets(st.integers(min_value=1, max_value=2_000), max_size=300))
def test_ranges_cover_exactly_the_ids_and_never_touch(ids: set[int]) -> None:
    ranges = id_ranges(list(ids))
    assert [i for first, last in ranges for i in range(first, last + 1)] == sorted(ids)
    assert all(last + 1 < first for (_, last), (first, _) in pairwise(ranges))
