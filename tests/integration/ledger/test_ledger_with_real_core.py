"""End to end with the real core: CoreService (WAL, engine, outbox) -> Tansu -> the settlement
consumer -> PostgreSQL, reconciled through the core's real CoreAdminService (`GrpcCoreView`).

Trades with partial fills, a price improvement and a cancel; once the ledger has settled
everything the core published, reconciliation at the core's engine_seq is MATCHED, the
invariants hold, and every materialized balance (available / held per trader and asset, the
fee account) equals what the core answers. A deposit made afterwards reaches the ledger too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2
from exchange.trading.v1 import trading_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from core.engine.testing import BTC, USDT
from core.service.testing import create_btc_usdt, deposit, operator, trader
from infra.local.kafka_broker import LocalBroker
from ledger.balance_checks import check_invariants
from ledger.consumer import ConsumerOptions, SettlementConsumer
from ledger.domain import ReconciliationStatus
from ledger.journal import FEE_OWNER_ID, AccountKind, EntryKind
from ledger.reconciliation import GrpcCoreView, Reconciliation
from ledger.settlement import Settlement
from tests.integration.core.service.service_harness import LOT, PRICE, Harness, start_harness
from tests.integration.ledger.ledger_support import LedgerDatabase

SHARD_ID = "shard-1"
TICK = USDT // 100
TRADERS = ("alice", "bob")
TIMEOUT_SECONDS = 15.0

Balances = dict[tuple[str, str, int], int]


async def _published_engine_seq(harness: Harness) -> int:
    """Waits until the outbox has published every sequenced command; returns engine_seq."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        status: core_admin_pb2.GetEngineStatusResponse = await harness.admin.GetEngineStatus(
            core_admin_pb2.GetEngineStatusRequest(), metadata=operator()
        )
        if status.published_engine_seq == status.engine_seq:
            return status.engine_seq
        assert time.monotonic() < deadline, f"the core did not publish in time: {status}"
        await asyncio.sleep(0.05)


def _ledger_engine_seq(ledger_database: LedgerDatabase) -> int:
    with ledger_database.owner_connection() as connection:
        row = connection.execute(
            "SELECT engine_seq_last FROM shard_positions WHERE shard_id = %s", (SHARD_ID,)
        ).fetchone()
    return 0 if row is None else int(row[0])


async def _settled(
    ledger_database: LedgerDatabase, consumer_task: asyncio.Task[None], engine_seq: int
) -> None:
    """Waits until the running consumer has posted the core's events up to `engine_seq`."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while _ledger_engine_seq(ledger_database) < engine_seq:
        if consumer_task.done():
            consumer_task.result()  # raises what stopped it
            raise AssertionError("the consumer stopped")
        assert time.monotonic() < deadline, "the ledger did not settle in time"
        await asyncio.sleep(0.05)


async def _core_balances(harness: Harness, traders: tuple[str, ...]) -> Balances:
    """What the core says of `traders` and the fee account, in the ledger's terms:
    (owner, asset, kind) -> balance, zeros left out. Traders through
    TradingService.ListAccountBalances, the fee account through
    CoreAdminService.GetEngineBalances (its available is the ledger's FEES account)."""
    balances: Balances = {}
    for owner in traders:
        response: trading_pb2.ListAccountBalancesResponse = (
            await harness.trading.ListAccountBalances(
                trading_pb2.ListAccountBalancesRequest(), metadata=trader(owner)
            )
        )
        for balance in response.balances:
            balances[(owner, balance.asset, AccountKind.AVAILABLE)] = balance.available
            balances[(owner, balance.asset, AccountKind.HELD)] = balance.held
    fees: core_admin_pb2.GetEngineBalancesResponse = await harness.admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(account_id=FEE_OWNER_ID), metadata=operator()
    )
    for fee in fees.balances:
        assert fee.held == 0, fee
        balances[(FEE_OWNER_ID, fee.asset, AccountKind.FEES)] = fee.available
    return {key: amount for key, amount in balances.items() if amount}


def _ledger_balances(ledger_database: LedgerDatabase, owners: tuple[str, ...]) -> Balances:
    return {key: amount for key, amount in ledger_database.balances().items() if key[0] in owners}


def _entry_counts(ledger_database: LedgerDatabase) -> dict[EntryKind, int]:
    with ledger_database.owner_connection() as connection:
        rows = connection.execute("SELECT kind, count(*) FROM journal_entries GROUP BY kind")
        return {EntryKind(kind): int(count) for kind, count in rows.fetchall()}


async def _trade(harness: Harness) -> int:
    """Partial fills both ways, a price improvement, a cancel, an order left open.
    Returns the number of fills."""
    sell, buy = types_pb2.SIDE_SELL, types_pb2.SIDE_BUY
    fills = 0

    async def place(account_id: str, order_id: str, side: int, lots: int, price: int) -> None:
        nonlocal fills
        placed = await harness.place(account_id, order_id, side, lots * LOT, price)
        assert placed.order.status != types_pb2.ORDER_STATUS_REJECTED, placed
        fills += len(placed.fills)

    await place("alice", "a-1", sell, 3, PRICE)  # rests
    await place("bob", "b-1", buy, 1, PRICE)  # alice's a-1 partially filled
    await place("bob", "b-2", buy, 4, PRICE)  # takes a-1's last 2 lots, rests 2 (partial)
    await place("alice", "a-2", sell, 1, PRICE)  # alice is the taker: b-2 has 1 left
    await harness.trading.CancelOrder(
        trading_pb2.CancelOrderRequest(client_order_id="b-2", request_id="cancel-b-2"),
        metadata=trader("bob"),
    )
    await place("alice", "a-3", sell, 2, PRICE + 5 * TICK)  # rests
    await place("bob", "b-3", buy, 1, PRICE + 40 * TICK)  # fills at a-3's price: the rest
    await place("alice", "a-4", sell, 2, PRICE + 7 * TICK)  # of bob's reservation released
    return fills


async def test_the_ledger_settles_and_reconciles_with_the_real_core(
    tmp_path: Path,
    kafka_broker: LocalBroker,
    ledger_engine: AsyncEngine,
    ledger_database: LedgerDatabase,
) -> None:
    harness = await start_harness(
        tmp_path / "core", broker=kafka_broker.bootstrap_servers, shard_id=SHARD_ID
    )
    stop = asyncio.Event()
    consumer_task: asyncio.Task[None] | None = None
    consumer = SettlementConsumer(
        Settlement(ledger_engine),
        ledger_engine,
        ConsumerOptions(kafka_broker.bootstrap_servers, partitions=[0], batch_records_max=7),
    )
    try:
        await create_btc_usdt(harness.channel)
        for account_id in TRADERS:
            await deposit(harness.channel, account_id, "BTC", 10 * BTC)
            await deposit(harness.channel, account_id, "USDT", 1_000_000 * USDT)
        await consumer.start()
        consumer_task = asyncio.create_task(consumer.run(stop))
        fills = await _trade(harness)
        engine_seq = await _published_engine_seq(harness)
        await _settled(ledger_database, consumer_task, engine_seq)

        report = await Reconciliation(
            ledger_engine, GrpcCoreView(harness.channel), shard_id=SHARD_ID
        ).reconcile(symbol="-", at_engine_seq=engine_seq)
        assert (report.status, report.differences, report.gaps) == (
            ReconciliationStatus.MATCHED,
            (),
            (),
        ), report
        assert (report.engine_seq, report.ledger_engine_seq) == (engine_seq, engine_seq)
        assert await check_invariants(ledger_engine) == []
        owners = (*TRADERS, FEE_OWNER_ID)
        core_balances = await _core_balances(harness, TRADERS)
        assert _ledger_balances(ledger_database, owners) == core_balances
        # The scenario did what it says: fills, fees, open orders, releases.
        assert fills == 4
        counts = _entry_counts(ledger_database)
        assert counts[EntryKind.TRADE] == fills
        assert counts[EntryKind.RELEASE] >= 2  # the cancel and the price improvement
        assert counts[EntryKind.DEPOSIT] == 4
        assert core_balances[(FEE_OWNER_ID, "USDT", AccountKind.FEES)] > 0
        assert core_balances[("alice", "BTC", AccountKind.HELD)] == 3 * LOT

        # Live: a deposit after the reconciliation reaches the ledger.
        await deposit(harness.channel, "carol", "USDT", 123 * USDT)
        await _settled(ledger_database, consumer_task, await _published_engine_seq(harness))
        assert ledger_database.balances()[("carol", "USDT", AccountKind.AVAILABLE)] == 123 * USDT
        assert _ledger_balances(ledger_database, ("carol", FEE_OWNER_ID)) == (
            await _core_balances(harness, ("carol",))
        )
        later = await Reconciliation(
            ledger_engine, GrpcCoreView(harness.channel), shard_id=SHARD_ID
        ).reconcile(symbol="-")
        assert (later.status, later.engine_seq) == (ReconciliationStatus.MATCHED, engine_seq + 1)
    finally:
        stop.set()
        if consumer_task is not None:
            await asyncio.wait_for(consumer_task, timeout=TIMEOUT_SECONDS)
        await consumer.stop()
        await harness.channel.close()
        await harness.core.stop()
