"""capture_snapshot() + serialize(): byte-identical to snapshot(), and to the encoder that
snapshot() used before the capture existed (kept here verbatim as the oracle), whatever is
applied between the capture and the serialization, and from another thread."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import fields
from typing import Any

import pytest

from core.engine import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Deposit,
    Engine,
    EngineConfig,
    SelfTradePrevention,
    Side,
    SnapshotCapture,
    TimeInForce,
    Withdraw,
)
from core.engine import snapshot as snapshot_module
from core.engine.book import Order
from core.engine.commands import Command
from core.engine.idempotency import PerAccountFifo
from core.engine.results import Outcome
from core.engine.testing import BTC, USDT, EngineDriver, limit_order, market_order

PRICE = 50_000 * USDT
TICK = USDT // 100
LOT = BTC // 10_000
ACCOUNTS = [f"account-{index}" for index in range(12)]


# ---------------------------------------------------------------- the oracle: the encoder
# snapshot() used before capture/serialize existed (format version 1), unchanged.


def _legacy_dataclass_to_dict(value: Any) -> dict[str, Any]:
    return {field.name: getattr(value, field.name) for field in fields(value)}


def _legacy_outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    return {
        "engine_seq": outcome.engine_seq,
        "reason": outcome.reason,
        "order_id": outcome.order_id,
        "status": outcome.status,
        "quantity_filled": outcome.filled_quantity,
        "cancelled_order_ids": list(outcome.cancelled_order_ids),
        "priority_kept": outcome.priority_kept,
    }


def _legacy_order_to_dict(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "side": order.side,
        "order_type": order.order_type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "self_trade_prevention": order.self_trade_prevention,
        "price": order.price,
        "quantity": order.quantity,
        "quote_quantity": order.quote_quantity,
        "quantity_filled": order.filled_quantity,
        "quantity_remaining": order.quantity_remaining,
        "reserved_amount": order.reserved_amount,
        "fee_ppm_units": order.fee_ppm_units,
        "fee_paid": order.fees_paid,
        "status": order.status,
    }


def legacy_encode(engine: Engine) -> bytes:
    markets = []
    for symbol in sorted(engine._markets):
        market = engine._markets[symbol]
        markets.append(
            {
                "spec": _legacy_dataclass_to_dict(market.spec),
                "mode": market.mode,
                "reference_price": market.reference_price,
                "stream_seq": market.stream_seq,
                "bids": [_legacy_order_to_dict(o) for o in market.book.bids.orders_in_priority()],
                "asks": [_legacy_order_to_dict(o) for o in market.book.asks.orders_in_priority()],
            }
        )
    tables: dict[str, PerAccountFifo[Any, Any]] = {
        "order_requests": engine._order_requests,
        "transfer_requests": engine._transfer_requests,
        "closed_orders": engine._closed_orders,
        "command_requests": engine._command_requests,
        "operator_requests": engine._operator_requests,
    }
    rows = {
        name: [
            (account_id, list(entries.items()))
            for account_id, entries in sorted(table.copy_tables().items())
        ]
        for name, table in tables.items()
    }
    state = {
        "format_version": 2,
        "config": _legacy_dataclass_to_dict(engine.config),
        "engine_seq_last": engine._engine_seq_last,
        "trade_id_last": engine._trade_id_last,
        "account_stream_seq": engine._account_stream_seq,
        "assets": [
            [asset, engine._asset_scales[asset], engine._asset_supply[asset]]
            for asset in sorted(engine._asset_scales)
        ],
        "markets": markets,
        "balances": [
            [account_id, asset, cell.available, cell.held]
            for (account_id, asset), cell in sorted(engine._balances.items())
        ],
        "order_requests": [
            [
                account_id,
                [
                    [key, _legacy_dataclass_to_dict(command), _legacy_outcome_to_dict(outcome)]
                    for key, (command, outcome) in entries
                ],
            ]
            for account_id, entries in rows["order_requests"]
        ],
        **{
            name: [
                [
                    account_id,
                    [
                        [
                            key,
                            type(command).__name__,
                            _legacy_dataclass_to_dict(command),
                            _legacy_outcome_to_dict(outcome),
                        ]
                        for key, (command, outcome) in entries
                    ],
                ]
                for account_id, entries in rows[name]
            ]
            for name in ("transfer_requests", "command_requests", "operator_requests")
        },
        "closed_orders": [
            [account_id, [[order_id, status] for order_id, status in entries]]
            for account_id, entries in rows["closed_orders"]
        ],
    }
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# ---------------------------------------------------------------- a seeded random workload


def random_command(rng: random.Random, engine: Engine, step: int) -> Command:
    account_id = rng.choice(ACCOUNTS)
    draw = rng.random()
    open_orders = engine.open_orders(account_id)
    # Keyed commands draw from few request ids: retries, reuses and the tables in snapshots.
    request_id = f"r{rng.randrange(40)}" if rng.random() < 0.5 else ""
    if draw < 0.15 and open_orders:
        return CancelOrder(
            account_id=account_id,
            order_id=rng.choice(open_orders).order_id,
            request_id=request_id,
        )
    if draw < 0.20 and open_orders:
        order = rng.choice(open_orders)
        price = order.price if rng.random() < 0.5 else order.price + rng.randint(-3, 3) * TICK
        return AmendOrder(
            account_id=account_id,
            order_id=order.order_id,
            price=price,
            quantity=order.quantity + rng.randint(-2, 2) * LOT,
            request_id=request_id,
        )
    if draw < 0.22:
        return CancelAllOrders(account_id=account_id, request_id=request_id)
    if draw < 0.25:
        return Deposit(
            account_id=account_id, asset="USDT", amount=USDT, transfer_id=f"t{rng.randrange(20)}"
        )
    if draw < 0.27:
        return Withdraw(account_id=account_id, asset="BTC", amount=LOT, transfer_id=f"w{step}")
    if draw < 0.28:
        return AdjustBalance(
            account_id=account_id, asset="BTC", delta=LOT, transfer_id=f"a{step}", memo="m"
        )
    if draw < 0.32:
        return market_order(account_id, rng.choice(list(Side)), quantity=rng.randint(1, 5) * LOT)
    side = rng.choice(list(Side))
    offset = rng.randint(-5, 30) * TICK
    price = PRICE - offset if side is Side.BUY else PRICE + offset
    client_order_id = f"c{rng.randrange(300)}" if rng.random() < 0.5 else ""
    return limit_order(
        account_id,
        side,
        rng.randint(1, 20) * LOT,
        price,
        client_order_id=client_order_id,
        time_in_force=rng.choice([TimeInForce.GTC] * 6 + [TimeInForce.IOC, TimeInForce.FOK]),
        self_trade_prevention=rng.choice(list(SelfTradePrevention)),
    )


def funded_driver(config: EngineConfig | None = None) -> EngineDriver:
    driver = EngineDriver(Engine(config))
    driver.bootstrap_btc_usdt()
    for account_id in ACCOUNTS:
        driver.fund(account_id, "USDT", 10_000_000 * USDT)
        driver.fund(account_id, "BTC", 1_000 * BTC)
    return driver


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_serialize_equals_snapshot_and_the_legacy_encoder(seed: int) -> None:
    rng = random.Random(seed)
    # Small tables so that FIFO eviction is part of what is compared.
    config = EngineConfig(
        client_order_ids_max_per_account=7,
        transfer_ids_max_per_account=3,
        closed_orders_max_per_account=5,
    )
    driver = funded_driver(config)
    for step in range(600):
        driver.apply(random_command(rng, driver.engine, step))
        if step % 50 == 0:
            engine = driver.engine
            captured = engine.capture_snapshot()
            assert isinstance(captured, SnapshotCapture)
            assert captured.serialize() == engine.snapshot() == legacy_encode(engine)


def test_a_capture_is_unaffected_by_later_commands() -> None:
    rng = random.Random(7)
    driver = funded_driver()
    pending: list[tuple[SnapshotCapture, bytes]] = []
    for step in range(800):
        driver.apply(random_command(rng, driver.engine, step))
        if step % 100 == 0:
            pending.append((driver.engine.capture_snapshot(), driver.engine.snapshot()))
    for captured, expected in pending:
        assert captured.serialize() == expected
        assert captured.serialize() == expected  # serialize does not consume the capture


def test_serialize_in_a_thread_while_the_engine_goes_on() -> None:
    rng = random.Random(11)
    driver = funded_driver()
    for step in range(400):
        driver.apply(random_command(rng, driver.engine, step))
    expected = driver.engine.snapshot()
    captured = driver.engine.capture_snapshot()
    produced: list[bytes] = []
    worker = threading.Thread(target=lambda: produced.append(captured.serialize()))
    worker.start()
    for step in range(400, 1_200):
        driver.apply(random_command(rng, driver.engine, step))
    worker.join()
    assert produced == [expected]
    assert driver.engine.snapshot() != expected  # the engine did move on


@pytest.mark.parametrize("chunk_items", [1, 2, 3, 128])
def test_chunked_encoding_is_identical_at_every_chunk_size(
    chunk_items: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    driver = funded_driver()
    for step in range(300):
        driver.apply(random_command(rng, driver.engine, step))
    monkeypatch.setattr(snapshot_module, "SERIALIZE_CHUNK_ITEMS", chunk_items)
    assert driver.engine.capture_snapshot().serialize() == legacy_encode(driver.engine)


def test_empty_engine_and_empty_book() -> None:
    engine = Engine()
    assert engine.capture_snapshot().serialize() == legacy_encode(engine)
    driver = EngineDriver()
    driver.bootstrap_btc_usdt()
    assert driver.engine.capture_snapshot().serialize() == legacy_encode(driver.engine)


def test_restored_engine_captures_identically() -> None:
    rng = random.Random(13)
    driver = funded_driver()
    for step in range(300):
        driver.apply(random_command(rng, driver.engine, step))
    restored = Engine.from_snapshot(driver.engine.capture_snapshot().serialize())
    assert restored.capture_snapshot().serialize() == driver.engine.snapshot()
