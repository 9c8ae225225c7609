"""NORMAL / CANCEL_ONLY / HALTED."""

from __future__ import annotations

import pytest

from core.engine import (
    AmendOrder,
    CancelOrder,
    MarketMode,
    RejectReason,
    SetMarketMode,
    Side,
)
from core.engine.commands import Command
from core.engine.testing import BTC, USDT, EngineDriver, limit_order, market_order

PRICE = 50_000 * USDT


@pytest.mark.parametrize(
    ("mode", "place", "amend", "cancel"),
    [
        (MarketMode.NORMAL, None, None, None),
        (
            MarketMode.CANCEL_ONLY,
            RejectReason.MARKET_CANCEL_ONLY,
            RejectReason.MARKET_CANCEL_ONLY,
            None,
        ),
        (
            MarketMode.HALTED,
            RejectReason.MARKET_HALTED,
            RejectReason.MARKET_HALTED,
            RejectReason.MARKET_HALTED,
        ),
    ],
)
def test_mode_rules(
    driver: EngineDriver,
    mode: MarketMode,
    place: RejectReason | None,
    amend: RejectReason | None,
    cancel: RejectReason | None,
) -> None:
    first = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.order_id
    second = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.order_id
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=mode))
    commands: list[tuple[Command, RejectReason | None]] = [
        (limit_order("bob", Side.SELL, BTC, PRICE + 10_000), place),
        (market_order("bob", Side.SELL, quantity=BTC // 4), place),
        (AmendOrder(account_id="alice", order_id=first, price=PRICE, quantity=BTC // 2), amend),
        (CancelOrder(account_id="alice", order_id=second), cancel),
    ]
    for command, reason in commands:
        assert driver.apply(command).outcome.reason is reason


def test_halted_book_is_frozen(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    depth_before = driver.engine.book_depth("BTC-USDT")
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    driver.apply(limit_order("bob", Side.SELL, BTC, PRICE))
    depth_after = driver.engine.book_depth("BTC-USDT")
    assert depth_before is not None
    assert depth_after is not None
    assert (depth_after.bids, depth_after.asks) == (depth_before.bids, depth_before.asks)


def test_trading_resumes_after_normal(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.NORMAL))
    assert driver.apply(limit_order("bob", Side.SELL, BTC, PRICE)).outcome.filled_quantity == BTC
