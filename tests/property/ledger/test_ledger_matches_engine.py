"""Property: the real engine's random command streams, turned into envelopes by the core's own
mapping (core/contracts/events.py) and settled in random batches with redeliveries, leave a
ledger whose invariants hold and whose balances equal the engine's, at the end and at a
random engine_seq in between (reconciliation reports MATCHED). Settled either as the
IngestEvents RPC does (`Settlement.post`) or as the consumer does (the planner's ready
batches, `Settlement.post_ready`: by plan in the steady state, by the general path after a
redelivery)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import psycopg
from exchange.events.v1.envelope_pb2 import EventEnvelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts.events import envelopes_for
from core.engine import (
    AdjustBalance,
    AmendOrder,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    Engine,
    EngineConfig,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    Withdraw,
)
from core.engine.commands import Command
from core.engine.testing import BTC, USDT, EngineDriver, coarse_spec
from infra.local.postgres import PostgresCluster
from ledger.balance_checks import check_invariants
from ledger.batch_planner import RecordPlanner, psycopg_conninfo
from ledger.db.connection import create_engine
from ledger.domain import EngineBalance, EngineBalances, EngineStatus, ReconciliationStatus
from ledger.journal import AccountKey, AccountKind, available, held
from ledger.reconciliation import Reconciliation
from ledger.settlement import Settlement

SHARD = "shard-7"
TICK = USDT
LOT = BTC // 100
ACCOUNTS = ("alice", "bob", "carol")
SPEC = coarse_spec()

accounts = st.sampled_from(ACCOUNTS)
prices = st.integers(min_value=990, max_value=1_010).map(lambda ticks: ticks * TICK)
quantities = st.integers(min_value=1, max_value=30).map(lambda count: count * LOT)
order_refs = st.integers(min_value=0, max_value=40)

commands = st.one_of(
    st.builds(
        lambda a, side, q, p, tif: PlaceOrder(
            account_id=a, symbol="BTC-USDT", side=side, quantity=q, price=p, time_in_force=tif
        ),
        accounts,
        st.sampled_from(list(Side)),
        quantities,
        prices,
        st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC]),
    ),
    st.builds(
        lambda a, side, q: PlaceOrder(
            account_id=a,
            symbol="BTC-USDT",
            side=side,
            order_type=OrderType.MARKET,
            quantity=q,
            time_in_force=TimeInForce.IOC,
        ),
        accounts,
        st.sampled_from(list(Side)),
        quantities,
    ),
    st.builds(lambda a, ref: ("cancel", a, ref), accounts, order_refs),
    st.builds(
        lambda a, ref, q, p: ("amend", a, ref, q, p), accounts, order_refs, quantities, prices
    ),
    st.builds(
        lambda a, asset, amount, kind: (kind, a, asset, amount),
        accounts,
        st.sampled_from(["BTC", "USDT"]),
        st.integers(min_value=1, max_value=10_000 * USDT),
        st.sampled_from(["deposit", "withdraw", "adjust", "adjust-down"]),
    ),
)


def _concrete(step: object, order_ids: Sequence[int], number: int) -> Command:
    if not isinstance(step, tuple):
        return step  # type: ignore[return-value]
    kind, account_id = step[0], step[1]
    if kind == "cancel":
        return CancelOrder(account_id=account_id, order_id=order_ids[step[2] % len(order_ids)])
    if kind == "amend":
        return AmendOrder(
            account_id=account_id,
            order_id=order_ids[step[2] % len(order_ids)],
            quantity=step[3],
            price=step[4],
        )
    _, _, asset, amount = step
    transfer_id = f"t{number}"
    if kind == "deposit":
        return Deposit(account_id=account_id, asset=asset, amount=amount, transfer_id=transfer_id)
    if kind == "withdraw":
        return Withdraw(account_id=account_id, asset=asset, amount=amount, transfer_id=transfer_id)
    delta = amount if kind == "adjust" else -amount
    return AdjustBalance(
        account_id=account_id, asset=asset, delta=delta, transfer_id=transfer_id, memo="property"
    )


def _run_engine(
    steps: Sequence[object],
) -> tuple[Engine, list[EventEnvelope], dict[int, list[EngineBalance]]]:
    """Apply the commands; return the engine, every envelope, and balances after each seq."""
    driver = EngineDriver(Engine(EngineConfig(open_orders_max_per_account=8)))
    envelopes: list[EventEnvelope] = []
    history: dict[int, list[EngineBalance]] = {}

    def apply(command: Command) -> None:
        result = driver.apply(command)
        envelopes.extend(
            envelopes_for(
                result.events,
                shard_id=SHARD,
                epoch=3,
                command=command,
                market_spec=lambda _symbol: SPEC,
            )
        )
        history[driver.engine_seq_last] = [
            EngineBalance(b.account_id, b.asset, b.available, b.held)
            for b in driver.engine.all_balances()
        ]

    for bootstrap in (
        CreateAsset(asset="BTC", scale=8),
        CreateAsset(asset="USDT", scale=6),
        CreateMarket(spec=SPEC),
    ):
        apply(bootstrap)
    for account_id in ACCOUNTS:
        apply(
            Deposit(
                account_id=account_id,
                asset="USDT",
                amount=20_000 * USDT,
                transfer_id=f"seed-{account_id}-usdt",
            )
        )
        apply(
            Deposit(
                account_id=account_id,
                asset="BTC",
                amount=20 * BTC,
                transfer_id=f"seed-{account_id}-btc",
            )
        )
    order_ids = [0]
    for number, step in enumerate(steps):
        command = _concrete(step, order_ids, number)
        apply(command)
        if isinstance(command, PlaceOrder):
            order_ids.append(driver.engine_seq_last)
    return driver.engine, envelopes, history


class EngineCore:
    """The CoreView of a finished engine run: its balances after every engine_seq."""

    def __init__(self, history: dict[int, list[EngineBalance]]) -> None:
        self.history = history
        self.last = max(history)

    async def engine_balances(self, *, at_engine_seq: int) -> EngineBalances:
        at = at_engine_seq or self.last
        known = max(seq for seq in self.history if seq <= at)
        return EngineBalances(at, tuple(self.history[known]))

    async def engine_status(self) -> EngineStatus:
        return EngineStatus(SHARD, 3, self.last)


_databases = itertools.count(1)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(commands, min_size=5, max_size=60),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    redeliveries=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40)), max_size=3),
    reconcile_fraction=st.floats(min_value=0, max_value=1),
    as_consumer=st.booleans(),
)
def test_settled_engine_events_equal_the_engine_balances(
    postgres_cluster: PostgresCluster,
    ledger_template: str,
    steps: list[object],
    cuts: list[int],
    redeliveries: list[tuple[int, int]],
    reconcile_fraction: float,
    as_consumer: bool,
) -> None:
    engine, envelopes, history = _run_engine(steps)
    batches = [envelopes[a:b] for a, b in itertools.pairwise([0, *sorted(cuts), len(envelopes)])]
    for start, length in redeliveries:  # at-least-once delivery: stretches arrive again
        batches.append(envelopes[start % len(envelopes) :][:length])
    database = postgres_cluster.create_database(
        f"ledger_property_{next(_databases)}", template=ledger_template
    )
    try:
        asyncio.run(
            _check(
                database.url(user="ledger_app"),
                batches,
                engine,
                history,
                reconcile_fraction,
                as_consumer=as_consumer,
            )
        )
    finally:
        postgres_cluster.drop_database(database.name)


async def _check(
    url: str,
    batches: list[list[EventEnvelope]],
    engine: Engine,
    history: dict[int, list[EngineBalance]],
    reconcile_fraction: float,
    *,
    as_consumer: bool,
) -> None:
    sql_engine = create_engine(url)
    planner = RecordPlanner(psycopg_conninfo(url)) if as_consumer else None
    try:
        settlement = Settlement(sql_engine)
        for batch in batches:
            if not batch:
                continue
            if planner is None:
                await settlement.post(batch)
            else:
                values = [envelope.SerializeToString() for envelope in batch]
                await settlement.post_ready(planner.plan(values))
        assert await check_invariants(sql_engine) == []
        ledger = await _customer_balances(url)
        expected: dict[AccountKey, int] = {}
        for balance in engine.all_balances():
            expected[available(balance.account_id, balance.asset)] = balance.available
            expected[held(balance.account_id, balance.asset)] = balance.held
        assert {k: v for k, v in ledger.items() if v} == {k: v for k, v in expected.items() if v}
        core = EngineCore(history)
        reconciliation = Reconciliation(sql_engine, core, shard_id=SHARD)
        at = max(1, int(core.last * reconcile_fraction))
        for at_engine_seq in (0, at):
            report = await reconciliation.reconcile(symbol="-", at_engine_seq=at_engine_seq)
            assert (report.status, report.differences, report.gaps) == (
                ReconciliationStatus.MATCHED,
                (),
                (),
            )
    finally:
        if planner is not None:
            planner.close()
        await sql_engine.dispose()


async def _customer_balances(url: str) -> dict[AccountKey, int]:
    async with await psycopg.AsyncConnection.connect(url.replace("+psycopg", "")) as connection:
        cursor = await connection.execute(
            "SELECT a.owner_id, a.asset, a.kind, b.balance FROM balances AS b "
            "JOIN accounts AS a USING (account_id) WHERE a.kind <> 4"
        )
        return {AccountKey(o, a, AccountKind(k)): v for o, a, k, v in await cursor.fetchall()}
