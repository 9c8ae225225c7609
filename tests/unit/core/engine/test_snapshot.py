"""snapshot() -> from_snapshot() round trip and identical continuation."""

from __future__ import annotations

import json

import pytest

from core.engine import (
    AmendOrder,
    CancelOrder,
    Deposit,
    Engine,
    EngineInvariantError,
    MarketMode,
    SelfTradePrevention,
    SetMarketMode,
    Side,
    TimeInForce,
)
from core.engine.commands import Command
from core.engine.testing import BTC, USDT, EngineDriver, limit_order, market_order

PRICE = 50_000 * USDT
TICK = USDT // 100


def build(driver: EngineDriver) -> None:
    for i in range(5):
        driver.apply(limit_order("alice", Side.BUY, BTC, PRICE - i * TICK, client_order_id=f"a{i}"))
        driver.apply(limit_order("bob", Side.SELL, BTC, PRICE + (i + 1) * TICK))
    driver.apply(limit_order("carol", Side.BUY, BTC, PRICE))  # behind alice at PRICE
    driver.apply(limit_order("bob", Side.SELL, BTC // 3 - (BTC // 3) % 10_000, PRICE))  # partial
    driver.apply(Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="t"))


CONTINUATION: list[Command] = [
    limit_order("bob", Side.SELL, 3 * BTC, PRICE - 2 * TICK),
    market_order("carol", Side.BUY, quantity=2 * BTC),
    AmendOrder(account_id="alice", client_order_id="a4", price=PRICE - 10 * TICK, quantity=BTC),
    CancelOrder(account_id="alice", client_order_id="a3"),
    limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="a0"),  # duplicate / clash
    limit_order(
        "alice",
        Side.BUY,
        BTC,
        PRICE + 5 * TICK,
        time_in_force=TimeInForce.IOC,
        self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
    ),
    Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="t"),  # retry
    SetMarketMode(symbol="BTC-USDT", mode=MarketMode.CANCEL_ONLY),
]


def test_round_trip_is_identical(driver: EngineDriver) -> None:
    build(driver)
    snapshot = driver.engine.snapshot()
    restored = Engine.from_snapshot(snapshot)
    assert restored.snapshot() == snapshot
    assert restored.state_hash() == driver.engine.state_hash()
    assert restored.all_balances() == driver.engine.all_balances()
    assert restored.book_depth("BTC-USDT") == driver.engine.book_depth("BTC-USDT")
    assert restored.open_orders("alice") == driver.engine.open_orders("alice")


def test_restored_engine_continues_identically(driver: EngineDriver) -> None:
    build(driver)
    restored = EngineDriver(Engine.from_snapshot(driver.engine.snapshot()))
    assert restored.engine_seq_last == driver.engine_seq_last
    for command in CONTINUATION:
        original = driver.apply(command)
        again = restored.apply(command)
        assert again == original
    assert restored.engine.state_hash() == driver.engine.state_hash()


def test_snapshot_is_canonical_json_without_floats(driver: EngineDriver) -> None:
    build(driver)
    snapshot = driver.engine.snapshot()
    state = json.loads(snapshot, parse_float=lambda _: pytest.fail("float in snapshot"))
    assert json.dumps(state, sort_keys=True, separators=(",", ":")).encode() == snapshot


def test_state_hash_changes_with_state(driver: EngineDriver) -> None:
    before = driver.engine.state_hash()
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    assert driver.engine.state_hash() != before


def test_unsupported_snapshot_version() -> None:
    with pytest.raises(EngineInvariantError):
        Engine.from_snapshot(b'{"format_version": 999}')


def test_corrupted_snapshot_is_detected(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    state = json.loads(driver.engine.snapshot())
    for cell in state["balances"]:
        if cell[0] == "alice" and cell[1] == "USDT":
            cell[3] += 1  # held no longer matches the open orders' reservation
    with pytest.raises(EngineInvariantError):
        Engine.from_snapshot(json.dumps(state).encode())
