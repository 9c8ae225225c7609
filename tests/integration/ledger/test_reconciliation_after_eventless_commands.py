"""Reconciliation against the real core when the last commands produced no event.

An idempotent PlaceOrder retry (answered from the engine's idempotency table) takes an engine
seq but publishes nothing, so the ledger never learns those seqs. The core's
GetEngineBalances reports `last_event_engine_seq` (the newest command at or before the
requested seq that produced events); reconciliation at the core's engine_seq is MATCHED once
the ledger posted that one — not BEHIND forever. Asked at a seq whose events the ledger has
not posted yet, it is still BEHIND.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from core.engine.testing import BTC, USDT
from core.service.testing import create_btc_usdt, deposit, operator
from infra.local.kafka_broker import LocalBroker
from ledger.consumer import ConsumerOptions, SettlementConsumer
from ledger.domain import ReconciliationStatus
from ledger.reconciliation import GrpcCoreView, Reconciliation
from ledger.settlement import Settlement
from tests.integration.core.service.service_harness import LOT, PRICE, start_harness
from tests.integration.ledger.ledger_support import LedgerDatabase
from tests.integration.ledger.test_ledger_with_real_core import (
    SHARD_ID,
    TIMEOUT_SECONDS,
    _published_engine_seq,
    _settled,
)


async def test_an_idempotent_retry_as_the_last_command_reconciles_matched(
    tmp_path: Path,
    kafka_broker: LocalBroker,
    ledger_engine: AsyncEngine,
    ledger_database: LedgerDatabase,
) -> None:
    harness = await start_harness(
        tmp_path / "core", broker=kafka_broker.bootstrap_servers, shard_id=SHARD_ID
    )
    stop = asyncio.Event()
    consumer = SettlementConsumer(
        Settlement(ledger_engine),
        ledger_engine,
        ConsumerOptions(kafka_broker.bootstrap_servers, partitions=[0]),
    )
    consumer_task: asyncio.Task[None] | None = None
    try:
        await create_btc_usdt(harness.channel)
        await deposit(harness.channel, "alice", "BTC", BTC)
        await deposit(harness.channel, "alice", "USDT", 1_000_000 * USDT)
        await consumer.start()
        consumer_task = asyncio.create_task(consumer.run(stop))
        placed = await harness.place("alice", "a-1", types_pb2.SIDE_BUY, LOT, PRICE)
        event_seq = placed.order.engine_seq
        retried = await harness.place("alice", "a-1", types_pb2.SIDE_BUY, LOT, PRICE)
        assert retried.order.order_id == placed.order.order_id
        await harness.place("alice", "a-1", types_pb2.SIDE_BUY, LOT, PRICE)  # the last: a retry

        engine_seq = await _published_engine_seq(harness)
        assert engine_seq == event_seq + 2
        balances = await harness.admin.GetEngineBalances(
            core_admin_pb2.GetEngineBalancesRequest(at_engine_seq=engine_seq),
            metadata=operator(),
        )
        assert (balances.engine_seq, balances.last_event_engine_seq) == (engine_seq, event_seq)
        await _settled(ledger_database, consumer_task, event_seq)

        reconciliation = Reconciliation(
            ledger_engine, GrpcCoreView(harness.channel), shard_id=SHARD_ID
        )
        report = await reconciliation.reconcile(symbol="-", at_engine_seq=engine_seq)
        assert (report.status, report.differences, report.gaps) == (
            ReconciliationStatus.MATCHED,
            (),
            (),
        ), report
        assert (report.engine_seq, report.ledger_engine_seq) == (engine_seq, event_seq)

        # Still BEHIND where the ledger really lacks events: stop the consumer, add one.
        stop.set()
        await asyncio.wait_for(consumer_task, timeout=TIMEOUT_SECONDS)
        consumer_task = None
        await deposit(harness.channel, "bob", "USDT", USDT)
        later_seq = await _published_engine_seq(harness)
        behind = await reconciliation.reconcile(symbol="-", at_engine_seq=later_seq)
        assert behind.status == ReconciliationStatus.BEHIND, behind
    finally:
        stop.set()
        if consumer_task is not None:
            await asyncio.wait_for(consumer_task, timeout=TIMEOUT_SECONDS)
        await consumer.stop()
        await harness.channel.close()
        await harness.core.stop()
