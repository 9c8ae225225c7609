"""The history checkpoint is exact: after random operations on a real engine, the writer's
state brought forward by `take_changes()` at each snapshot equals the live history's full
copy at that seq, and a history restored from its checkpoint file equals the live one.

Small bounds (3 orders, 4 fills per account) make evictions frequent; four accounts make
some accounts change between two snapshots while others stay clean. What this can catch: a
mutation that is not tracked, a change lost or applied twice, evictions applied in another
order, client order ids derived differently from the live mapping. The sink's tests: three
overlapping snapshots each write the history at their own seq; after a failed apply the
next snapshot copies the whole history and is exact again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine import AmendOrder, CancelOrder, Engine, Side, TimeInForce
from core.engine.testing import BTC, USDT, EngineDriver, limit_order
from core.sequencer import EventSinkStart
from core.service.history_sink import (
    HistorySink,
    _fill_fields,
    checkpoint_path,
    decode_checkpoint,
    encode_checkpoint,
)
from core.service.order_history import HistoryCapture, HistoryCheckpointState, OrderHistory

ACCOUNTS = ("a0", "a1", "a2", "a3")
ORDERS_MAX = 3
FILLS_MAX = 4
LOT = BTC // 10_000
MID = 50_000 * USDT
TICK = USDT // 100


def comparable(capture: HistoryCapture) -> tuple[Any, ...]:
    return (
        capture.orders,
        capture.client_order_ids,
        {account_id: list(map(_fill_fields, fills)) for account_id, fills in capture.fills.items()},
    )


def new_history(driver: EngineDriver) -> OrderHistory:
    return OrderHistory(
        lambda: driver.engine, orders_max_per_account=ORDERS_MAX, fills_max_per_account=FILLS_MAX
    )


def new_state(capture: HistoryCapture) -> HistoryCheckpointState:
    return HistoryCheckpointState(
        capture, orders_max_per_account=ORDERS_MAX, fills_max_per_account=FILLS_MAX
    )


place = st.tuples(
    st.just("place"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from((Side.BUY, Side.SELL)),
    st.integers(-3, 3),  # price offset in ticks: crosses often
    st.integers(1, 3),  # lots
    st.sampled_from((TimeInForce.GTC, TimeInForce.IOC)),
    st.sampled_from(("", "c1", "c2", "c3")),  # reused ids: duplicates and reuse
)
# The order: an index into the account's open orders the history holds (oldest first).
cancel = st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(0, 5))
amend = st.tuples(st.just("amend"), st.sampled_from(ACCOUNTS), st.integers(0, 5), st.integers(1, 4))
snapshot = st.tuples(st.just("snapshot"))
operations = st.lists(st.one_of(place, place, cancel, amend, snapshot), max_size=80)


def run(operations: list[tuple[Any, ...]]) -> None:
    driver = EngineDriver()
    driver.bootstrap_btc_usdt()
    for account_id in ACCOUNTS:
        driver.fund(account_id, "BTC", 100 * BTC)
        driver.fund(account_id, "USDT", 10_000_000 * USDT)
    history = new_history(driver)
    state = new_state(history.capture())
    history.drop_changes()
    snapshots = 0
    for operation in [*operations, ("snapshot",)]:
        kind = operation[0]
        if kind == "snapshot":
            state.apply(history.take_changes())
            live = history.capture()
            assert comparable(state.capture()) == comparable(live)
            # The checkpoint file of the state restores the live history.
            seq = driver.engine_seq_last
            _, decoded = decode_checkpoint(encode_checkpoint(seq, 0, state.capture()), seq)
            restored = new_history(driver)
            restored.restore(decoded)
            assert comparable(restored.capture()) == comparable(live)
            snapshots += 1
            continue
        if kind == "place":
            _, account_id, side, offset, lots, time_in_force, client_order_id = operation
            command: Any = limit_order(
                account_id,
                side,
                lots * LOT,
                MID + offset * TICK,
                time_in_force=time_in_force,
                client_order_id=client_order_id,
            )
        else:
            account_id = operation[1]
            open_ids = [
                record.order_id
                for record in history.orders(
                    account_id, symbol="", open_only=True, below_order_id=0
                )
            ]
            if not open_ids:
                continue
            order_id = open_ids[operation[2] % len(open_ids)]
        if kind == "cancel":
            command = CancelOrder(account_id=account_id, order_id=order_id)
        elif kind == "amend":
            command = AmendOrder(
                account_id=account_id,
                order_id=order_id,
                price=MID - 4 * TICK,
                quantity=operation[3] * LOT,
            )
        history.record([command], [driver.apply(command)])
    assert snapshots >= 1


@settings(max_examples=150, deadline=None)
@given(operations)
def test_checkpoint_state_equals_the_live_history(operations: list[tuple[Any, ...]]) -> None:
    run(operations)


def test_clean_accounts_and_evictions_in_one_interval() -> None:
    """A busy account evicts within one interval while another stays clean."""
    busy = [
        ("place", "a0", Side.BUY, -3, 1, TimeInForce.GTC, f"c{index % 2}") for index in range(7)
    ]
    crossing = [("place", "a1", Side.SELL, -3, 1, TimeInForce.IOC, "") for _ in range(6)]
    run(
        [
            ("place", "a2", Side.SELL, 3, 1, TimeInForce.GTC, "c1"),
            ("snapshot",),
            *busy,
            ("snapshot",),
            *crossing,
            ("cancel", "a0", 0),
            ("snapshot",),
            ("snapshot",),
        ]
    )


def test_a_state_is_not_changed_by_later_history() -> None:
    """The rows the state holds are copies: the live records go on changing."""
    driver = EngineDriver()
    driver.bootstrap_btc_usdt()
    driver.fund("a0", "USDT", 10_000_000 * USDT)
    driver.fund("a1", "BTC", 100 * BTC)
    history = new_history(driver)
    command = limit_order("a0", Side.BUY, 2 * LOT, MID, client_order_id="b")
    history.record([command], [driver.apply(command)])
    state = new_state(HistoryCapture({}, {}, {}))
    state.apply(history.take_changes())
    before = comparable(state.capture())
    command = limit_order("a1", Side.SELL, LOT, MID)
    history.record([command], [driver.apply(command)])
    assert comparable(state.capture()) == before
    assert comparable(state.capture()) != comparable(history.capture())
    assert isinstance(driver.engine, Engine)


class _Feed:
    """A HistorySink on a temp directory, fed by a real engine."""

    def __init__(self, directory: Path) -> None:
        self.driver = EngineDriver()
        self.driver.bootstrap_btc_usdt()
        for account_id in ACCOUNTS:
            self.driver.fund(account_id, "BTC", 100 * BTC)
            self.driver.fund(account_id, "USDT", 10_000_000 * USDT)
        self.sink = HistorySink(orders_max_per_account=ORDERS_MAX, fills_max_per_account=FILLS_MAX)
        self.sink.start(
            EventSinkStart(
                directory=directory,
                epoch=1,
                snapshot_seq=0,
                wal_last_seq=self.driver.engine_seq_last,
                engine=self.driver.engine,
            )
        )
        self.directory = directory
        self.rounds = 0

    def trade(self) -> None:
        self.rounds += 1
        maker, taker = ACCOUNTS[self.rounds % 4], ACCOUNTS[(self.rounds + 1) % 4]
        commands = [
            limit_order(maker, Side.SELL, LOT, MID, client_order_id=f"s{self.rounds}"),
            limit_order(taker, Side.BUY, LOT, MID, time_in_force=TimeInForce.IOC),
        ]
        first_seq = self.driver.engine_seq_last + 1
        self.sink.applied(first_seq, commands, [self.driver.apply(c) for c in commands])

    def checkpoint(self, engine_seq: int) -> tuple[Any, ...]:
        data = checkpoint_path(self.directory, engine_seq).read_bytes()
        return comparable(decode_checkpoint(data, engine_seq)[1])


def test_overlapping_snapshots_write_each_seq_exactly(tmp_path: Path) -> None:
    feed = _Feed(tmp_path)

    async def snapshots() -> dict[int, tuple[Any, ...]]:
        expected = {}
        tasks = []
        for _ in range(3):
            for _ in range(5):
                feed.trade()
            seq = feed.sink.applied_seq
            expected[seq] = comparable(feed.sink.history.capture())
            # A kept snapshot's name: its checkpoint is not pruned.
            (tmp_path / f"snapshot-{seq:020d}.bin").touch()
            tasks.append(asyncio.create_task(feed.sink.wait_durable(seq)))
            await asyncio.sleep(0)  # its synchronous part runs now, at seq
        await asyncio.gather(*tasks)
        return expected

    for seq, history in asyncio.run(snapshots()).items():
        assert feed.checkpoint(seq) == history


def test_a_failed_apply_is_followed_by_a_whole_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = _Feed(tmp_path)
    feed.trade()

    def broken(self: HistoryCheckpointState, changes: object) -> None:
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(HistoryCheckpointState, "apply", broken)
        with pytest.raises(MemoryError):
            asyncio.run(feed.sink.wait_durable(feed.sink.applied_seq))
    feed.trade()
    seq = feed.sink.applied_seq
    expected = comparable(feed.sink.history.capture())
    asyncio.run(feed.sink.wait_durable(seq))
    assert feed.checkpoint(seq) == expected
