"""The crash campaign (tests/chaos, bench/chaos.py): SDK load on the local exchange while a
random component is killed (SIGKILL, then `stack up` restarts it) or paused (SIGSTOP, then
SIGCONT) at a random moment; after every cycle the exchange must have lost nothing.

One cycle:
1. the load (tests/support/trading_load.py: orders, cancels, amends, deposits, withdrawals)
   runs; after a random 1-4 s a random component gets a random fault: `kill` (its whole
   process group, so no child survives; down for 0.2-2 s, then `stack up` starts what does
   not run and waits until it is healthy) or `pause` (SIGSTOP for 0.5-4 s, then SIGCONT);
2. the load goes on for `after_fault_seconds`, then stops; placements whose outcome stayed
   unknown are retried with their own keys (a retry must return the same order);
3. the checks, each with a deadline:
   - no acknowledged command is lost: every order acknowledged since the last cycle is
     found by GetOrder on the same account and market, every acknowledged cancel reads
     CANCELLED, every acknowledged deposit and withdrawal is found by GetTransfer;
   - the ledger reconciles exactly with the core: MATCHED with no gap at the core's
     engine_seq, every invariant holds, and each load account's ledger balances equal the
     core's (a trade settled twice, or not at all, would show here: the ledger's
     (kind, reference) uniqueness makes the first impossible, the balances prove both);
   - every WebSocket book (a BookFeed per market, kept open through the whole campaign
     and reconnecting by itself) is in sync and equals the core's book, aggregated from the
     open orders the core holds for the load's accounts.

The seed picks components, faults and moments, and the load's own choices; the same seed
repeats the same campaign (timings on a busy machine aside).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from exchange_sdk import MarketSpec, OrderStatus, Side
from exchange_sdk.errors import ExchangeError
from exchange_sdk.models import BookLevel
from exchange_sdk.signing import ApiCredentials
from exchange_sdk.websocket import BookFeed, MarketDataSocket, ReconnectPolicy

from infra.local.components import DEMO_SYMBOLS
from infra.local.supervisor import process_alive
from tests.support.local_stack import StackCommand
from tests.support.soak import reconcile_exactly
from tests.support.trading_load import LoadProfile, TradingLoad

COMPONENTS: Final = (
    "core",
    "ledger",
    "gateway",
    "streaming",
    "broker",
    "postgres",
    "redis",
    "envoy",
)
FAULTS: Final = ("kill", "pause")
_OPEN: Final = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


@dataclass(frozen=True)
class ChaosOptions:
    cycles: int
    seed: int
    orders_per_second: float = 20.0
    components: Sequence[str] = COMPONENTS
    after_fault_seconds: float = 2.0
    check_timeout_seconds: float = 90.0

    def schedule(self, rng: random.Random) -> list[tuple[str, str]]:
        """(component, fault) per cycle: the first cycles visit every component once in a
        shuffled order (so that a short campaign hits each), the rest are drawn at random."""
        first = list(self.components)
        rng.shuffle(first)
        components = [
            first[number] if number < len(first) else rng.choice(first)
            for number in range(self.cycles)
        ]
        return [(component, rng.choice(FAULTS)) for component in components]


@dataclass
class CycleResult:
    number: int
    component: str
    fault: str
    fault_seconds: float  # killed: until `stack up` returned; paused: stopped for
    recovery_seconds: float = 0.0  # from the end of the fault until every check passed
    orders_checked: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED: " + "; ".join(self.failures)
        return (
            f"cycle {self.number:3d}: {self.fault:5s} {self.component:9s} "
            f"fault {self.fault_seconds:4.1f}s, checked {self.orders_checked} orders, "
            f"recovered in {self.recovery_seconds:5.1f}s: {verdict}"
        )


def log_tail(stack: StackCommand, component: str, lines: int) -> str:
    """The last `lines` lines of a component's log (what a failure message carries)."""
    log = stack.var / "log" / f"{component}.log"
    if not log.exists():
        return f"(no {log.name})"
    return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-lines:])


def _process_group(stack: StackCommand, component: str) -> int:
    pid = stack.pid(component)  # each component leads its own session (start_new_session)
    return os.getpgid(pid)


async def inject(
    stack: StackCommand, component: str, fault: str, rng: random.Random
) -> tuple[float, list[str]]:
    """Applies the fault and undoes it (restart or resume); returns its duration and what
    went wrong undoing it (a `stack up` that failed; it is tried up to 3 times, and the
    campaign cannot go on if the third fails)."""
    started = time.monotonic()
    group = _process_group(stack, component)
    if fault == "pause":
        os.killpg(group, signal.SIGSTOP)
        try:
            await asyncio.sleep(rng.uniform(0.5, 4.0))
        finally:
            os.killpg(group, signal.SIGCONT)
        return time.monotonic() - started, []
    os.killpg(group, signal.SIGKILL)
    while process_alive(group):
        await asyncio.sleep(0.02)
    await asyncio.sleep(rng.uniform(0.2, 2.0))
    problems: list[str] = []
    for _attempt in range(3):
        answer = await asyncio.to_thread(stack, "up")
        if answer.returncode == 0:
            return time.monotonic() - started, problems
        output = (answer.stdout + answer.stderr)[-600:]
        tail = log_tail(stack, component, 5)
        problems.append(f"`stack up` failed after killing {component}: {output}; log: {tail}")
        await asyncio.sleep(2.0)
    raise AssertionError("\n".join(problems))


def core_book(
    orders: Sequence[tuple[Side, Decimal, Decimal]],
) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
    """(bids best first, asks best first) aggregated from (side, price, remaining) of open
    limit orders."""
    levels: dict[tuple[Side, Decimal], list[Decimal]] = defaultdict(list)
    for side, price, remaining in orders:
        levels[(side, price)].append(remaining)

    def side_levels(side: Side) -> tuple[BookLevel, ...]:
        prices = sorted((price for kind, price in levels if kind is side), reverse=side is Side.BUY)
        return tuple(
            BookLevel(price, sum(levels[(side, price)], Decimal(0)), len(levels[(side, price)]))
            for price in prices
        )

    return side_levels(Side.BUY), side_levels(Side.SELL)


class BookWatch:
    """A BookFeed per market on its own socket, running for the whole campaign."""

    def __init__(self, websocket_url: str, credentials: ApiCredentials) -> None:
        self._url = websocket_url
        self._credentials = credentials
        self.feeds: dict[str, BookFeed] = {}
        self._sockets: list[MarketDataSocket] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, markets: Sequence[MarketSpec]) -> None:
        policy = ReconnectPolicy(backoff_initial_seconds=0.1, backoff_max_seconds=1.0)
        for market in markets:
            socket = MarketDataSocket(self._url, credentials=self._credentials, reconnect=policy)
            await socket.connect()
            self._sockets.append(socket)
            feed = BookFeed(socket, market)
            self.feeds[market.symbol] = feed
            self._tasks.append(asyncio.create_task(feed.run()))

    def failed(self) -> str | None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return f"a book feed stopped: {task.exception()!r}"
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ExchangeError):
                await task
        for socket in self._sockets:
            await socket.close()


async def _open_orders(load: TradingLoad, symbol: str) -> list[tuple[Side, Decimal, Decimal]]:
    found: list[tuple[Side, Decimal, Decimal]] = []
    for account in load.accounts:
        client = load.clients[account]
        token = ""
        while True:
            page = await client.list_orders(symbol, open_only=True, page_token=token)
            found += [
                (order.side, order.price, order.remaining_quantity)
                for order in page.items
                if order.price is not None and order.status in _OPEN
            ]
            token = page.next_page_token
            if not token:
                break
    return found


async def _books_equal_core(load: TradingLoad, watch: BookWatch) -> list[str]:
    differences = []
    for symbol, feed in watch.feeds.items():
        bids, asks = core_book(await _open_orders(load, symbol))
        if not feed.book.in_sync:
            differences.append(f"{symbol}: WebSocket book not in sync")
        elif (feed.book.bids(), feed.book.asks()) != (bids, asks):
            differences.append(
                f"{symbol}: WebSocket book at seq {feed.book.seq} "
                f"{feed.book.bids(3)}/{feed.book.asks(3)} != core {bids[:3]}/{asks[:3]}"
            )
    return differences


async def _lost_commands(load: TradingLoad, checked: Counter[str]) -> tuple[list[str], int]:
    """The acknowledged commands since the last check that the exchange does not have."""
    lost: list[str] = []
    acknowledged = load.acknowledged
    orders = acknowledged.orders_since(checked["orders"])
    for client_order_id, order in orders:
        try:
            found = await load.clients[order.account_id].get_order(order.order_id)
        except ExchangeError as error:
            lost.append(f"order {client_order_id} ({order.order_id}): {error.reason}")
            continue
        if found.client_order_id != client_order_id or found.symbol != order.symbol:
            lost.append(f"order {client_order_id}: found {found.client_order_id} {found.symbol}")
    cancelled = list(acknowledged.cancelled.items())[checked["cancelled"] :]
    for order_id, account in cancelled:
        found = await load.clients[account].get_order(order_id)
        if found.status is not OrderStatus.CANCELLED:
            lost.append(f"cancel of {order_id}: the order is {found.status.name}")
    transfers = list(acknowledged.transfers.items())[checked["transfers"] :]
    for transfer_id, account in transfers:
        try:
            await load.clients[account].get_transfer(transfer_id)
        except ExchangeError as error:
            lost.append(f"transfer {transfer_id}: {error.reason}")
    checked["orders"] += len(orders)
    checked["cancelled"] += len(cancelled)
    checked["transfers"] += len(transfers)
    return lost, len(orders)


async def _until(
    what: Callable[[], Awaitable[list[str]]], timeout_seconds: float, *, interval: float = 0.5
) -> list[str]:
    """Calls the async check `what` until it returns no failure or the time is up."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            failures = await what()
        except ExchangeError as error:  # a service still coming back
            failures = [f"{error.reason}: {error}"]
        if not failures or time.monotonic() > deadline:
            return failures
        await asyncio.sleep(interval)


async def check_cycle(
    stack: StackCommand,
    load: TradingLoad,
    watch: BookWatch,
    checked: Counter[str],
    result: CycleResult,
    timeout_seconds: float,
) -> None:
    for _attempt in range(20):
        disagreements = await load.resolve_unknown()
        result.failures += [f"retry of {key} disagrees" for key in disagreements]
        if not load.acknowledged.unknown_placements:
            break
        await asyncio.sleep(1.0)
    else:
        result.failures.append(
            f"{len(load.acknowledged.unknown_placements)} placements stayed unknown"
        )
    lost, result.orders_checked = await _lost_commands(load, checked)
    result.failures += lost
    try:
        status, detail = await asyncio.to_thread(
            reconcile_exactly, stack, load.accounts, timeout_seconds
        )
    except AssertionError as error:  # the ledger never caught up: say where it stopped
        status, detail = "BEHIND", str(error).split("differences", 1)[0].strip()
    if status != "MATCHED":
        logs = "; ".join(f"{name} log: {log_tail(stack, name, 6)}" for name in ("ledger", "broker"))
        result.failures.append(f"reconciliation {status}: {detail}; {logs}")
    result.failures += await _until(lambda: _books_equal_core(load, watch), timeout_seconds)
    if (failure := watch.failed()) is not None:
        result.failures.append(failure)


async def run_campaign(
    stack: StackCommand,
    options: ChaosOptions,
    *,
    output: Callable[[str], None] = print,
    stop_at_first_failure: bool = False,
) -> list[CycleResult]:
    rng = random.Random(options.seed)
    load = TradingLoad(
        edge_address=stack.edge_address,
        core_address=stack.core_address,
        gateway_grpc_address=stack.gateway_grpc_address,
        profile=LoadProfile(orders_per_second=options.orders_per_second, seed=options.seed),
        account_prefix=f"chaos{options.seed % 10_000}",
    )
    await load.set_up(DEMO_SYMBOLS)
    first_key = load.keys[load.accounts[0]]
    watch = BookWatch(
        f"ws://{stack.edge_address}/ws", ApiCredentials(first_key.key_id, first_key.secret)
    )
    await watch.start(load.markets)
    checked: Counter[str] = Counter()
    results: list[CycleResult] = []
    try:
        for number, (component, fault) in enumerate(options.schedule(rng), start=1):
            stop = asyncio.Event()
            driver = asyncio.create_task(load.run(stop))
            try:
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                duration, problems = await inject(stack, component, fault, rng)
                fault_ended = time.monotonic()
                await asyncio.sleep(options.after_fault_seconds)
            finally:
                stop.set()
                await driver
            result = CycleResult(number, component, fault, duration, failures=problems)
            await check_cycle(stack, load, watch, checked, result, options.check_timeout_seconds)
            result.recovery_seconds = time.monotonic() - fault_ended
            results.append(result)
            output(result.line())
            if stop_at_first_failure and not result.passed:
                break
    finally:
        await watch.close()
        await load.close()
    return results


def format_table(results: Sequence[CycleResult]) -> str:
    """Per component: cycles by fault, failures, the slowest recovery."""
    rows = [
        f"{'component':10s} {'kills':>5s} {'pauses':>6s} {'failed':>6s} "
        f"{'recovery max':>12s} {'recovery median':>15s}"
    ]
    for component in COMPONENTS:
        mine = [result for result in results if result.component == component]
        if not mine:
            continue
        recoveries = sorted(result.recovery_seconds for result in mine)
        rows.append(
            f"{component:10s} {sum(r.fault == 'kill' for r in mine):5d} "
            f"{sum(r.fault == 'pause' for r in mine):6d} "
            f"{sum(not r.passed for r in mine):6d} {recoveries[-1]:11.1f}s "
            f"{recoveries[len(recoveries) // 2]:14.1f}s"
        )
    return "\n".join(rows)
