"""Several SDK traders on the real local exchange, then the books must agree exactly.

- Random trading: four extra accounts (funded as the operator through the core's
  FundingService, keys from the gateway's ApiKeyService) run as asyncio tasks with the
  SDK's AsyncClient through Envoy for a few seconds: random limit orders (either side,
  around the reference price, so many cross), market orders and cancels. Once the outbox
  has published and the ledger has posted up to the core's engine_seq, reconciliation of
  the whole shard is MATCHED with no gap, every ledger invariant holds, and each account's
  ledger AVAILABLE/HELD equal the core's available/held.
- Kill the core during a burst: the core process is SIGKILLed while the traders place
  orders; `stack up` starts it again (only what is missing). Every order a trader got
  acknowledged is known to the restarted core by its client order id, placing it again
  with the same idempotency key returns the original result, an order that was not
  acknowledged exists at most once after its retry, and the ledger still reconciles
  exactly.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange_sdk import AsyncClient, MarketSpec, OrderResult, OrderStatus, Side
from exchange_sdk.errors import NotFoundError, RejectedError, UnavailableError

from infra.local.components import DEMO_SYMBOLS, components
from infra.local.demo_accounts import fund_accounts, trader_keys
from infra.local.edge_client import ApiKey
from infra.local.supervisor import process_alive
from tests.support.exchange_access import (
    async_client,
    core_trader_balances,
    invariant_violations,
    ledger_trader_balances,
    settled_reconciliation,
    topic_envelopes,
)
from tests.support.local_stack import StackCommand

CORE_EVENTS_TOPIC = "core.events.v1"
TRADERS = tuple(f"e2e-trader-{number}" for number in range(1, 5))
RANDOM_SECONDS = 10.0
BURST_BEFORE_KILL_SECONDS = 3.0
BURST_AFTER_KILL_SECONDS = 2.0
TRADER_RATE_LIMIT_PER_MINUTE = 1_000_000
SEED = int(os.environ.get("E2E_SEED", str(random.randrange(2**32))))


@pytest.fixture(scope="module")
def traders(stack: StackCommand) -> dict[str, ApiKey]:
    fund_accounts(stack.core_address, TRADERS)
    # The traders are load generators: on a fast machine one key places well over the
    # gateway's default 1,000 requests a minute (rate limits are tested in tests/integration/edge).
    return trader_keys(
        stack.gateway_grpc_address, TRADERS, rate_limit_per_minute=TRADER_RATE_LIMIT_PER_MINUTE
    )


def _random_price(market: MarketSpec, random_source: random.Random) -> Decimal:
    """Within 0.5 % of the reference, on the tick: buys and sells cross often."""
    offset = Decimal(random_source.randint(-50, 50)) / Decimal(10_000)
    price = market.reference_price * (1 + offset)
    return (price // market.price_tick) * market.price_tick


def _random_quantity(market: MarketSpec, random_source: random.Random) -> Decimal:
    return max(market.min_quantity, market.lot_step * random_source.randint(1, 20))


@dataclass
class Tally:
    actions: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    fills: int = 0


async def _trade_randomly(trader: AsyncClient, seed: int, seconds: float, tally: Tally) -> None:
    random_source = random.Random(seed)
    markets = [await trader.get_market(symbol) for symbol in DEMO_SYMBOLS]
    open_orders: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        market = random_source.choice(markets)
        side = random_source.choice((Side.BUY, Side.SELL))
        draw = random_source.random()
        try:
            if draw < 0.25 and open_orders:
                tally.actions["cancel"] += 1
                order_id = open_orders.pop(random_source.randrange(len(open_orders)))
                await trader.cancel_order(order_id)
                continue
            if draw < 0.4:
                tally.actions["market"] += 1
                result = await trader.place_order(
                    market.symbol, side, _random_quantity(market, random_source)
                )
            else:
                tally.actions["limit"] += 1
                result = await trader.place_order(
                    market.symbol,
                    side,
                    _random_quantity(market, random_source),
                    price=_random_price(market, random_source),
                )
        except RejectedError as rejection:  # e.g. an order filled before its cancel
            tally.rejections[rejection.reason] += 1
            continue
        tally.fills += len(result.fills)
        if result.order.status in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}:
            open_orders.append(result.order.order_id)


def _assert_books_agree(stack: StackCommand, accounts: list[str]) -> None:
    report = settled_reconciliation(stack)
    assert report.status == ledger_types_pb2.RECONCILIATION_STATUS_MATCHED, report
    assert not report.gaps, report
    # MATCHED at the core's engine_seq although the last commands may be eventless retries
    # (the ledger posted up to the last command with events, GetEngineBalances says which).
    assert report.ledger_engine_seq <= report.engine_seq
    assert invariant_violations(stack) == []
    for account_id in accounts:
        assert ledger_trader_balances(stack, account_id) == core_trader_balances(
            stack, account_id
        ), account_id


async def test_random_traders_then_the_ledger_reconciles_exactly(
    stack: StackCommand, traders: dict[str, ApiKey]
) -> None:
    print(f"seed {SEED} (E2E_SEED={SEED} repeats this run)")
    tally = Tally()
    clients = [async_client(stack, key) for key in traders.values()]
    try:
        await asyncio.gather(
            *(
                _trade_randomly(trader, SEED + number, RANDOM_SECONDS, tally)
                for number, trader in enumerate(clients)
            )
        )
    finally:
        for trader in clients:
            await trader.close()
    print(
        f"actions {dict(tally.actions)}, fills {tally.fills}, rejections {dict(tally.rejections)}"
    )
    assert tally.fills > 0, tally
    assert sum(tally.actions.values()) > sum(tally.rejections.values()), tally
    _assert_books_agree(stack, list(traders))


def _differences(original: OrderResult, again: OrderResult) -> dict[str, tuple[object, object]]:
    """The fields of the order (and its fills) that differ: (original, again)."""
    differences = {
        name: (getattr(original.order, name), getattr(again.order, name))
        for name in original.order.__dataclass_fields__
        if name != "raw" and getattr(original.order, name) != getattr(again.order, name)
    }
    if original.fills != again.fills:
        differences["fills"] = (original.fills, again.fills)
    return differences


@dataclass(frozen=True)
class Placement:
    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal


async def _place(trader: AsyncClient, placement: Placement) -> OrderResult:
    return await trader.place_order(
        placement.symbol,
        placement.side,
        placement.quantity,
        price=placement.price,
        client_order_id=placement.client_order_id,
    )


@dataclass
class Burst:
    acknowledged: dict[str, tuple[Placement, OrderResult]] = field(default_factory=dict)
    unacknowledged: dict[str, Placement] = field(default_factory=dict)
    acknowledged_at_kill: int = 0


async def _burst(
    trader: AsyncClient, name: str, seed: int, stop: asyncio.Event, burst: Burst
) -> None:
    random_source = random.Random(seed)
    markets = [await trader.get_market(symbol) for symbol in DEMO_SYMBOLS]
    number = 0
    while not stop.is_set():
        number += 1
        market = random_source.choice(markets)
        placement = Placement(
            client_order_id=f"burst-{name}-{number}",
            symbol=market.symbol,
            side=random_source.choice((Side.BUY, Side.SELL)),
            quantity=_random_quantity(market, random_source),
            price=_random_price(market, random_source),
        )
        try:
            result = await _place(trader, placement)
        except UnavailableError:  # not acknowledged (the core is down): unknown outcome
            burst.unacknowledged[placement.client_order_id] = placement
            await asyncio.sleep(0.2)
            continue
        except RejectedError:
            continue
        burst.acknowledged[placement.client_order_id] = (placement, result)


async def _burst_and_kill_the_core(stack: StackCommand, traders: dict[str, ApiKey]) -> Burst:
    burst = Burst()
    stop = asyncio.Event()
    clients = {name: async_client(stack, key) for name, key in traders.items()}
    try:
        tasks = [
            asyncio.create_task(_burst(trader, name, SEED + number, stop, burst))
            for number, (name, trader) in enumerate(clients.items())
        ]
        await asyncio.sleep(BURST_BEFORE_KILL_SECONDS)
        core_pid = stack.pid("core")
        os.kill(core_pid, signal.SIGKILL)
        burst.acknowledged_at_kill = len(burst.acknowledged)
        await asyncio.sleep(BURST_AFTER_KILL_SECONDS)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for trader in clients.values():
            await trader.close()
    assert not process_alive(core_pid)
    return burst


@pytest.fixture(scope="module")
def killed_burst(stack: StackCommand, traders: dict[str, ApiKey]) -> Burst:
    """A burst of orders from every trader, the core SIGKILLed in the middle of it, and
    `stack up` to start it again (only what is missing)."""
    burst = asyncio.run(_burst_and_kill_the_core(stack, traders))
    assert burst.acknowledged_at_kill > 0, "orders were acknowledged before the kill"
    assert burst.unacknowledged, "the traders noticed the core was gone"
    restarted = stack.up()
    assert "core: started" in restarted.stdout
    # Only the core was missing: every other service outlived its death.
    running = {
        line.split(":", 1)[0] for line in restarted.stdout.splitlines() if "already running" in line
    }
    services = {component.name for component in components(stack.ports, stack.var)}
    assert running == services - {"core"}, restarted.stdout
    return burst


def _owned_by(name: str, client_order_ids: Iterable[str]) -> list[str]:
    return [
        identifier for identifier in client_order_ids if identifier.startswith(f"burst-{name}-")
    ]


async def test_kill_the_core_during_a_burst_loses_no_acknowledged_order(
    stack: StackCommand, traders: dict[str, ApiKey], killed_burst: Burst
) -> None:
    burst = killed_burst
    accepted = {
        envelope.order_accepted.order_id
        for envelope in await topic_envelopes(stack.broker_address, CORE_EVENTS_TOPIC)
        if envelope.HasField("order_accepted")
    }
    for name, key in traders.items():
        async with async_client(stack, key) as trader:
            for client_order_id in _owned_by(name, burst.acknowledged):
                placement, original = burst.acknowledged[client_order_id]
                assert original.order.order_id in accepted, client_order_id  # in the event log
                again = await _place(trader, placement)  # the SDK's retry, the same key
                assert again.order.order_id == original.order.order_id, client_order_id
            for client_order_id in _owned_by(name, burst.unacknowledged):
                # Applied before the crash or not at all: its retry places it at most once.
                placement = burst.unacknowledged[client_order_id]
                try:
                    first = await _place(trader, placement)
                except RejectedError:
                    continue
                assert (await _place(trader, placement)).order.order_id == first.order.order_id
    _assert_books_agree(stack, list(traders))


async def _acknowledged(
    stack: StackCommand, traders: dict[str, ApiKey], burst: Burst
) -> AsyncIterator[tuple[AsyncClient, str, tuple[Placement, OrderResult]]]:
    """Each acknowledged order of the burst with a client of the trader who placed it."""
    for name, key in traders.items():
        async with async_client(stack, key) as trader:
            for client_order_id in _owned_by(name, burst.acknowledged):
                yield trader, client_order_id, burst.acknowledged[client_order_id]


async def test_after_the_restart_get_order_finds_every_acknowledged_order(
    stack: StackCommand, traders: dict[str, ApiKey], killed_burst: Burst
) -> None:
    lost: dict[str, str] = {}
    async for trader, client_order_id, (_placement, original) in _acknowledged(
        stack, traders, killed_burst
    ):
        try:
            known = await trader.get_order(client_order_id=client_order_id)
        except NotFoundError:
            lost[client_order_id] = original.order.status.name
            continue
        assert known.order_id == original.order.order_id
    assert not lost, f"{len(lost)} of {len(killed_burst.acknowledged)} not found: {lost}"


async def test_after_the_restart_a_retry_returns_the_original_result(
    stack: StackCommand, traders: dict[str, ApiKey], killed_burst: Burst
) -> None:
    changed: dict[str, object] = {}
    async for trader, client_order_id, (placement, original) in _acknowledged(
        stack, traders, killed_burst
    ):
        again = await _place(trader, placement)
        if again != original:
            changed[client_order_id] = _differences(original, again)
    assert not changed, f"{len(changed)} of {len(killed_burst.acknowledged)}: {changed}"
