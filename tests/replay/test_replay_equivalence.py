"""The replay-equivalence gate: the committed WAL, replayed by the current engine, gives the
committed state hashes and digests (tests/replay/fixture.py, docs/adr/0021).

A failure here means the engine's behaviour changed. If that was the intent, regenerate the
fixture in the same commit and say why there:

    .venv/bin/python -m tests.replay.fixture --write
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from core.engine import Engine
from core.engine.commands import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetMarketMode,
    Withdraw,
)
from core.engine.enums import MarketMode, OrderType, SelfTradePrevention, TimeInForce
from core.engine.results import ApplyResult
from tests.replay import fixture

REGENERATE = "the engine's behaviour changed; if on purpose: python -m tests.replay.fixture --write"


def test_replay_gives_the_committed_figures(tmp_path: Path) -> None:
    figures = dataclasses.asdict(fixture.replay(into=tmp_path))
    expected = {name: fixture.expected()[name] for name in figures}
    differences = {
        name: (expected[name], value) for name, value in figures.items() if expected[name] != value
    }
    assert not differences, f"{REGENERATE}: (committed, replayed) {differences}"


def test_restart_from_the_snapshot_gives_the_same_state(tmp_path: Path) -> None:
    restored_hash, final_hash = fixture.replay_from_snapshot(into=tmp_path)
    assert restored_hash == fixture.expected()["state_hash_at_snapshot"], REGENERATE
    assert final_hash == fixture.expected()["state_hash"], REGENERATE


def test_the_fixture_covers_every_command_and_mode(tmp_path: Path) -> None:
    decoded = fixture.commands(fixture.FIXTURE_DIRECTORY, tmp_path)
    commands = [command for _, command, _ in decoded]
    types = Counter(type(command) for command in commands)
    every_type = {
        CreateAsset,
        CreateMarket,
        SetMarketMode,
        Deposit,
        Withdraw,
        AdjustBalance,
        PlaceOrder,
        CancelOrder,
        CancelAllOrders,
        AmendOrder,
    }
    assert set(types) == every_type
    places = [command for command in commands if isinstance(command, PlaceOrder)]
    assert {order.self_trade_prevention for order in places} == set(SelfTradePrevention)
    assert {order.time_in_force for order in places} == set(TimeInForce)
    assert any(order.post_only for order in places)
    assert any(order.order_type is OrderType.MARKET and order.quote_quantity for order in places)
    assert len({order.symbol for order in places}) >= 2
    modes = {command.mode for command in commands if isinstance(command, SetMarketMode)}
    assert modes == set(MarketMode)
    keyed = [
        command.request_id
        for command in commands
        if isinstance(command, CancelOrder | CancelAllOrders | AmendOrder) and command.request_id
    ]
    assert len(keyed) > len(set(keyed)), "keyed retries"
    assert len(commands) >= fixture.COMMAND_COUNT
    assert [seq for seq, _, _ in decoded] == list(range(1, len(decoded) + 1))
    snapshot_seq = fixture.expected()["snapshot_engine_seq"]
    assert len(decoded) // 4 < snapshot_seq < 3 * len(decoded) // 4


class _AmendsTwiceTheQuantity(Engine):
    """An engine whose amends grow orders by one more lot than asked: the kind of quiet
    behaviour change the gate exists to catch."""

    def apply(self, command: Command, *, engine_seq: int, timestamp_ns: int) -> ApplyResult:
        if isinstance(command, AmendOrder) and command.quantity:
            command = dataclasses.replace(command, quantity=command.quantity * 2)
        return super().apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)


def test_the_gate_sees_a_changed_engine(tmp_path: Path) -> None:
    figures = fixture.replay(into=tmp_path, engine_type=_AmendsTwiceTheQuantity)
    assert figures.outcome_digest != fixture.expected()["outcome_digest"]
    assert figures.event_digest != fixture.expected()["event_digest"]
    assert figures.state_hash != fixture.expected()["state_hash"]


def test_a_regenerated_fixture_is_the_committed_one(tmp_path: Path) -> None:
    """The generator is deterministic: writing the fixture again from its seed gives the
    committed figures (so a regeneration changes them only when behaviour changed)."""
    fixture.write(tmp_path / "fixture")
    regenerated = fixture.expected(tmp_path / "fixture")
    assert regenerated == fixture.expected()
    committed_wal = sorted((fixture.FIXTURE_DIRECTORY / "wal").iterdir())
    written_wal = sorted((tmp_path / "fixture" / "wal").iterdir())
    assert [path.read_bytes() for path in written_wal] == [
        path.read_bytes() for path in committed_wal
    ]


@pytest.fixture(autouse=True)
def _committed_fixture_exists() -> None:
    assert (fixture.FIXTURE_DIRECTORY / "expected.json").is_file(), "fixture not committed"
