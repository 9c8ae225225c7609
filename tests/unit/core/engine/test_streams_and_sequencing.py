"""engine_seq input, per-stream event numbering, determinism."""

from __future__ import annotations

import pytest

from core.engine import (
    CreateAsset,
    Engine,
    EngineInvariantError,
    Side,
)
from core.engine.events import Event
from core.engine.testing import BTC, USDT, EngineDriver, limit_order

PRICE = 50_000 * USDT


def test_engine_seq_must_increase() -> None:
    engine = Engine()
    engine.apply(CreateAsset(asset="BTC", scale=8), engine_seq=5, timestamp_ns=0)
    with pytest.raises(EngineInvariantError):
        engine.apply(CreateAsset(asset="ETH", scale=8), engine_seq=5, timestamp_ns=0)
    with pytest.raises(EngineInvariantError):
        engine.apply(CreateAsset(asset="ETH", scale=8), engine_seq=4, timestamp_ns=0)
    engine.apply(CreateAsset(asset="ETH", scale=8), engine_seq=9, timestamp_ns=0)
    assert engine.engine_seq_last == 9


def test_unknown_command_type_raises() -> None:
    with pytest.raises(EngineInvariantError):
        Engine().apply("not a command", engine_seq=1, timestamp_ns=0)  # type: ignore[arg-type]


def test_events_carry_engine_seq_and_timestamp(driver: EngineDriver) -> None:
    result = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    assert {event.engine_seq for event in result.events} == {driver.engine_seq_last}
    assert {event.timestamp_ns for event in result.events} == {driver.timestamp_ns}


def scenario(driver: EngineDriver) -> list[Event]:
    events: list[Event] = []
    for command in [
        limit_order("alice", Side.BUY, BTC, PRICE),
        limit_order("bob", Side.SELL, BTC // 2, PRICE),
        limit_order("bob", Side.SELL, BTC, PRICE + 10_000),
        limit_order("alice", Side.BUY, 0, PRICE),  # rejected, still numbered
        limit_order("carol", Side.BUY, 2 * BTC, PRICE + 10_000),
    ]:
        events.extend(driver.apply(command).events)
    return events


def test_market_stream_is_gapless(driver: EngineDriver) -> None:
    events = scenario(driver)
    market_seqs = [event.seq for event in events if event.symbol == "BTC-USDT"]
    assert market_seqs == list(range(market_seqs[0], market_seqs[0] + len(market_seqs)))
    assert driver.engine.market("BTC-USDT").seq == market_seqs[-1]  # type: ignore[union-attr]
    depth = driver.engine.book_depth("BTC-USDT")
    assert depth is not None
    assert depth.seq == market_seqs[-1]


def test_account_stream_is_separate_and_gapless() -> None:
    driver = EngineDriver()
    driver.bootstrap_btc_usdt()  # AssetCreated x2 -> account stream 1, 2
    driver.fund("alice", "USDT", USDT)  # 3
    driver.fund("alice", "BTC", BTC)  # 4
    assert driver.engine.account_stream_seq() == 4
    assert driver.engine.market("BTC-USDT").seq == 1  # type: ignore[union-attr]


def test_replay_is_deterministic() -> None:
    def run() -> tuple[list[Event], str]:
        driver = EngineDriver()
        driver.bootstrap_btc_usdt()
        for account_id in ("alice", "bob", "carol"):
            driver.fund(account_id, "USDT", 1_000_000 * USDT)
            driver.fund(account_id, "BTC", 100 * BTC)
        return scenario(driver), driver.engine.state_hash()

    assert run() == run()
