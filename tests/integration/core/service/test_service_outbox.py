"""The service with its outbox: every event of every acknowledged command reaches the event
log (both topics, engine and per-symbol order), across a restart of the service, and
GetEngineStatus reports the published position."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2

from core.engine.testing import BTC, USDT
from core.service.testing import create_btc_usdt, deposit, operator
from infra.local.kafka_broker import LocalBroker
from tests.integration.core.outbox.outbox_support import SHARD_ID, assert_published_exactly
from tests.integration.core.service.service_harness import LOT, PRICE, Harness, start_harness


async def _wait_until_published(harness: Harness, *, timeout_seconds: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_seconds
    while True:
        status: core_admin_pb2.GetEngineStatusResponse = await harness.admin.GetEngineStatus(
            core_admin_pb2.GetEngineStatusRequest(), metadata=operator()
        )
        if status.engine_seq > 0 and status.published_engine_seq == status.engine_seq:
            return status.engine_seq
        assert time.monotonic() < deadline, f"not published in time: {status}"
        await asyncio.sleep(0.05)


async def _trade(harness: Harness, round_index: int) -> None:
    await harness.place("alice", f"sell-{round_index}", types_pb2.SIDE_SELL, 2 * LOT, PRICE)
    bought = await harness.place("bob", f"buy-{round_index}", types_pb2.SIDE_BUY, LOT, PRICE)
    assert bought.order.status == types_pb2.ORDER_STATUS_FILLED


async def test_events_reach_the_log_across_a_restart(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    data_dir = tmp_path / "core"
    harness = await start_harness(
        data_dir, broker=kafka_broker.bootstrap_servers, shard_id=SHARD_ID
    )
    try:
        await create_btc_usdt(harness.channel)
        for account_id in ("alice", "bob"):
            await deposit(harness.channel, account_id, "BTC", 10 * BTC)
            await deposit(harness.channel, account_id, "USDT", 1_000_000 * USDT)
        for round_index in range(5):
            await _trade(harness, round_index)
        first_run_seq = await _wait_until_published(harness)
    finally:
        await harness.channel.close()
        await harness.core.stop()

    harness = await start_harness(
        data_dir, broker=kafka_broker.bootstrap_servers, shard_id=SHARD_ID
    )
    try:
        for round_index in range(5, 10):
            await _trade(harness, round_index)
        assert await _wait_until_published(harness) > first_run_seq
    finally:
        await harness.channel.close()
        await harness.core.stop()

    await assert_published_exactly(kafka_broker.bootstrap_servers, data_dir)
