"""SDK traffic on a local exchange for the soak (bench/soak.py) and the crash campaign
(tests/chaos, bench/chaos.py): market makers, takers and random traders through Envoy at a
set rate of order placements, plus deposits and withdrawals, with every acknowledged
command recorded so that a check can later prove none was lost.

- Makers quote post-only limit orders around a mid that walks a tick at a time (bounded to
  `mid_band` of the market's reference price, well inside the core's price band); each keeps
  at most `quotes_per_side_max` quotes per side and market, replacing the oldest by an
  amend (half the time) or a cancel and a new quote.
- Takers send IOC limit orders 1 % through the mid, either side at random: they hit the
  makers' quotes, so trades flow steadily and inventories do not drift one way.
- Random traders place limit orders near the mid (some cross), cancel and amend their own,
  and keep at most `open_orders_max` open.
- Funding: every `funding_interval_seconds` one operator deposit (the core's FundingService,
  as the exchange's operator) and one trader withdrawal (the SDK), each with its own id.

Acknowledged means the SDK returned a result; a rejection is an acknowledged "no" (kept by
reason). A call that ends UNAVAILABLE (or DEADLINE_EXCEEDED) after the SDK's own retries
has an unknown outcome and is kept as such: `resolve_unknown` retries each with the same key
later, which must then apply it at most once. All amounts are Decimals the SDK converts
exactly to minor units; prices stay on the tick and quantities on the lot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, TypeVar

import grpc
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from exchange_sdk import AsyncClient, MarketSpec, OrderResult, OrderStatus, Side
from exchange_sdk.errors import ExchangeError, UnavailableError

from infra.local.demo_accounts import OPERATOR_METADATA, fund_accounts, trader_keys
from infra.local.edge_client import ApiKey

ResultT = TypeVar("ResultT")

# Minor units (asset scales of infra/local/reference_data.py): enough for hours of load.
LOAD_FUNDS: Final = (
    ("USDT", 100_000_000 * 10**6),
    ("BTC", 2_000 * 10**8),
    ("ETH", 30_000 * 10**8),
)
DEPOSIT_AMOUNT_MINOR: Final = 1_000 * 10**6  # 1,000 USDT
WITHDRAWAL_AMOUNT: Final = Decimal("100")  # USDT
RATE_LIMIT_PER_MINUTE: Final = 1_000_000  # load generators: far above any trader's limit
_OPEN_STATUSES: Final = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


@dataclass(frozen=True)
class LoadProfile:
    orders_per_second: float
    makers: int = 2
    takers: int = 2
    random_traders: int = 2
    # Shares of the order placements (they sum to 1).
    maker_share: float = 0.5
    taker_share: float = 0.25
    quotes_per_side_max: int = 5
    open_orders_max: int = 10
    workers_per_role: int = 4
    funding_interval_seconds: float = 5.0
    mid_band: Decimal = Decimal("0.02")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.orders_per_second <= 0 or min(self.makers, self.takers, self.random_traders) < 1:
            raise ValueError(f"invalid load profile {self}")


@dataclass(frozen=True, slots=True)
class AcknowledgedOrder:
    account_id: str
    symbol: str
    order_id: str
    status: OrderStatus


@dataclass(frozen=True, slots=True)
class UnknownPlacement:
    """A placement whose outcome is unknown (UNAVAILABLE): retried later with its key."""

    account_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    time_in_force: str | None
    post_only: bool


@dataclass
class Acknowledgements:
    """What the exchange acknowledged, by idempotency key."""

    orders: dict[str, AcknowledgedOrder] = field(default_factory=dict)  # client order id
    cancelled: dict[str, str] = field(default_factory=dict)  # order id -> account id
    amends: dict[str, tuple[str, str]] = field(default_factory=dict)  # request id -> acct, order
    transfers: dict[str, str] = field(default_factory=dict)  # transfer id -> account id
    unknown_placements: dict[str, UnknownPlacement] = field(default_factory=dict)

    def orders_since(self, count: int) -> list[tuple[str, AcknowledgedOrder]]:
        """The acknowledged orders after the first `count` (insertion order)."""
        return list(itertools.islice(self.orders.items(), count, None))


@dataclass
class LoadStats:
    """Counters since the start; `snapshot()` copies them for per-minute differences."""

    placed: int = 0  # acknowledged placements, rejections included
    commands: Counter[str] = field(default_factory=Counter)  # acknowledged, by kind
    rejections: Counter[str] = field(default_factory=Counter)  # by reason
    unavailable: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # unexpected, by reason
    fills: int = 0
    place_latencies_ms: list[float] = field(default_factory=list)

    def take_latencies(self) -> list[float]:
        latencies, self.place_latencies_ms = self.place_latencies_ms, []
        return latencies


def quantize(value: Decimal, step: Decimal) -> Decimal:
    return (value // step) * step


class Mid:
    """A market's mid price: a bounded random walk of one tick per step."""

    def __init__(self, market: MarketSpec, band: Decimal, random_source: random.Random) -> None:
        self.market = market
        self.price = market.reference_price
        self._low = quantize(market.reference_price * (1 - band), market.price_tick)
        self._high = quantize(market.reference_price * (1 + band), market.price_tick)
        self._random = random_source

    def step(self) -> Decimal:
        ticks = self._random.choice((-1, 0, 1))
        self.price = min(self._high, max(self._low, self.price + ticks * self.market.price_tick))
        return self.price

    def offset(self, fraction: Decimal) -> Decimal:
        """The mid moved by `fraction` (negative: below), on the tick."""
        return quantize(self.price * (1 + fraction), self.market.price_tick)


class Pacer:
    """Hands out start times spaced 1/rate apart to any number of waiting workers."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        # Never bank more than a second of slots (after a stall the load does not burst).
        self._next = max(self._next, now - 1.0)
        slot, self._next = self._next, self._next + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class TradingLoad:
    """The load's accounts and clients; `run(stop)` drives them until `stop` is set."""

    def __init__(
        self,
        *,
        edge_address: str,
        core_address: str,
        gateway_grpc_address: str,
        profile: LoadProfile,
        account_prefix: str = "load",
    ) -> None:
        self.profile = profile
        self.edge_address = edge_address
        self.core_address = core_address
        self.gateway_grpc_address = gateway_grpc_address
        self.makers = [f"{account_prefix}-maker-{n}" for n in range(1, profile.makers + 1)]
        self.takers = [f"{account_prefix}-taker-{n}" for n in range(1, profile.takers + 1)]
        self.traders = [
            f"{account_prefix}-trader-{n}" for n in range(1, profile.random_traders + 1)
        ]
        self.accounts = [*self.makers, *self.takers, *self.traders]
        self.acknowledged = Acknowledgements()
        self.stats = LoadStats()
        self.keys: dict[str, ApiKey] = {}
        self.clients: dict[str, AsyncClient] = {}
        self.markets: list[MarketSpec] = []
        self._random = random.Random(profile.seed)
        self._mids: dict[str, Mid] = {}
        self._quotes: dict[tuple[str, str, Side], deque[str]] = {}
        self._open: dict[str, deque[tuple[str, str]]] = {}  # trader -> (order id, symbol)
        self._ids = itertools.count(1)
        self._run_id = f"{profile.seed:x}-{time.time_ns() // 1_000_000:x}"

    # ---------------------------------------------------------------- set-up
    async def set_up(self, symbols: Sequence[str]) -> None:
        """Funds the accounts, creates their keys and looks the markets up (idempotent
        funding: the transfer ids are fixed per account and asset)."""
        await asyncio.to_thread(fund_accounts, self.core_address, self.accounts, LOAD_FUNDS)
        self.keys = await asyncio.to_thread(
            trader_keys,
            self.gateway_grpc_address,
            self.accounts,
            rate_limit_per_minute=RATE_LIMIT_PER_MINUTE,
        )
        self.clients = {
            account: AsyncClient(self.edge_address, api_key=key.key_id, api_secret=key.secret)
            for account, key in self.keys.items()
        }
        first = self.clients[self.accounts[0]]
        self.markets = [await first.get_market(symbol) for symbol in symbols]
        self._mids = {
            market.symbol: Mid(market, self.profile.mid_band, self._random)
            for market in self.markets
        }

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

    def _key(self, kind: str) -> str:
        return f"{kind}-{self._run_id}-{next(self._ids)}"

    # ---------------------------------------------------------------- one call
    async def _call(
        self, kind: str, call: Callable[[], Awaitable[ResultT]]
    ) -> tuple[ResultT | None, bool]:
        """(result, acknowledged): None and True for a rejection, None and False for an
        unknown outcome (UNAVAILABLE after the SDK's retries)."""
        try:
            result = await call()
        except UnavailableError:
            self.stats.unavailable += 1
            return None, False
        except ExchangeError as error:
            if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.stats.unavailable += 1
                return None, False
            self.stats.rejections[error.reason] += 1
            self.stats.commands[kind] += 1
            return None, True
        self.stats.commands[kind] += 1
        return result, True

    async def place(
        self,
        account_id: str,
        market: MarketSpec,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        *,
        time_in_force: str | None = None,
        post_only: bool = False,
    ) -> OrderResult | None:
        client_order_id = self._key("order")
        client = self.clients[account_id]
        started = time.monotonic()
        result, acknowledged = await self._call(
            "place",
            lambda: client.place_order(
                market.symbol,
                side,
                quantity,
                price=price,
                time_in_force=time_in_force,
                post_only=post_only,
                client_order_id=client_order_id,
            ),
        )
        if not acknowledged:
            self.acknowledged.unknown_placements[client_order_id] = UnknownPlacement(
                account_id,
                client_order_id,
                market.symbol,
                side,
                quantity,
                price,
                time_in_force,
                post_only,
            )
            return None
        self.stats.placed += 1
        self.stats.place_latencies_ms.append((time.monotonic() - started) * 1000)
        if result is None:
            return None
        self.stats.fills += len(result.fills)
        self.acknowledged.orders[client_order_id] = AcknowledgedOrder(
            account_id, market.symbol, result.order.order_id, result.order.status
        )
        return result

    async def cancel(self, account_id: str, order_id: str) -> bool:
        client = self.clients[account_id]
        request_id = self._key("cancel")
        result, _acknowledged = await self._call(
            "cancel", lambda: client.cancel_order(order_id, request_id=request_id)
        )
        if result is not None:
            self.acknowledged.cancelled[order_id] = account_id
        return result is not None

    async def amend(
        self, account_id: str, market: MarketSpec, order_id: str, price: Decimal
    ) -> OrderResult | None:
        client = self.clients[account_id]
        request_id = self._key("amend")
        result, _acknowledged = await self._call(
            "amend",
            lambda: client.amend_order(
                order_id, symbol=market.symbol, new_price=price, request_id=request_id
            ),
        )
        if result is not None:
            self.acknowledged.amends[request_id] = (account_id, order_id)
            self.stats.fills += len(result.fills)
        return result

    # ---------------------------------------------------------------- roles
    def _quantity(self, market: MarketSpec, lots_max: int) -> Decimal:
        return max(market.min_quantity, market.lot_step * self._random.randint(1, lots_max))

    async def _maker_step(self) -> bool:
        account = self._random.choice(self.makers)
        market = self._random.choice(self.markets)
        mid = self._mids[market.symbol]
        mid.step()
        side = self._random.choice((Side.BUY, Side.SELL))
        depth = Decimal(self._random.randint(1, 10)) / Decimal(2_000)  # 0.05 % .. 0.5 %
        price = mid.offset(-depth if side is Side.BUY else depth)
        quotes = self._quotes.setdefault((account, market.symbol, side), deque())
        if len(quotes) >= self.profile.quotes_per_side_max:
            oldest = quotes.popleft()
            if self._random.random() < 0.5:
                amended = await self.amend(account, market, oldest, price)
                if amended is not None and amended.order.status in _OPEN_STATUSES:
                    quotes.append(oldest)
                    return False
            else:
                await self.cancel(account, oldest)
        result = await self.place(
            account, market, side, self._quantity(market, 20), price, post_only=True
        )
        if result is not None and result.order.status in _OPEN_STATUSES:
            quotes.append(result.order.order_id)
        return True

    async def _taker_step(self) -> bool:
        account = self._random.choice(self.takers)
        market = self._random.choice(self.markets)
        side = self._random.choice((Side.BUY, Side.SELL))
        mid = self._mids[market.symbol]
        price = mid.offset(Decimal("0.01") if side is Side.BUY else Decimal("-0.01"))
        await self.place(
            account, market, side, self._quantity(market, 5), price, time_in_force="IOC"
        )
        return True

    async def _trader_step(self) -> bool:
        account = self._random.choice(self.traders)
        open_orders = self._open.setdefault(account, deque())
        draw = self._random.random()
        if open_orders and (draw < 0.3 or len(open_orders) >= self.profile.open_orders_max):
            order_id, _symbol = open_orders.popleft()
            await self.cancel(account, order_id)
            return False
        if open_orders and draw < 0.5:
            order_id, symbol = open_orders.popleft()
            market = next(spec for spec in self.markets if spec.symbol == symbol)
            amended = await self.amend(
                account, market, order_id, self._mids[symbol].offset(self._near())
            )
            if amended is not None and amended.order.status in _OPEN_STATUSES:
                open_orders.append((order_id, symbol))
            return False
        market = self._random.choice(self.markets)
        side = self._random.choice((Side.BUY, Side.SELL))
        result = await self.place(
            account,
            market,
            side,
            self._quantity(market, 10),
            self._mids[market.symbol].offset(self._near()),
        )
        if result is not None and result.order.status in _OPEN_STATUSES:
            open_orders.append((result.order.order_id, market.symbol))
        return True

    def _near(self) -> Decimal:
        return Decimal(self._random.randint(-30, 30)) / Decimal(10_000)  # within 0.3 %

    async def _funding_step(self) -> None:
        account = self._random.choice(self.accounts)
        transfer_id = self._key("deposit")
        request = funding_pb2.CreateDepositRequest(
            transfer_id=transfer_id, account_id=account, asset="USDT", amount=DEPOSIT_AMOUNT_MINOR
        )
        async with grpc.aio.insecure_channel(self.core_address) as channel:
            stub = funding_pb2_grpc.FundingServiceStub(channel)
            try:
                await stub.CreateDeposit(request, metadata=OPERATOR_METADATA, timeout=10)
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.stats.unavailable += 1
                else:
                    self.stats.errors[f"deposit {error.code().name}"] += 1
            else:
                self.stats.commands["deposit"] += 1
                self.acknowledged.transfers[transfer_id] = account
        account = self._random.choice(self.accounts)
        client = self.clients[account]
        transfer_id = self._key("withdrawal")
        result, _acknowledged = await self._call(
            "withdraw",
            lambda: client.withdraw(
                "USDT", WITHDRAWAL_AMOUNT, reference=f"soak:{transfer_id}", transfer_id=transfer_id
            ),
        )
        if result is not None:
            self.acknowledged.transfers[transfer_id] = account

    # ---------------------------------------------------------------- running
    async def _role(
        self, step: Callable[[], Awaitable[bool]], pacer: Pacer, stop: asyncio.Event
    ) -> None:
        """Runs `step` until `stop`; the pacer spaces the placements (a step that only
        cancelled or amended is followed at once by the next, so that the rate asked is the
        rate of placements)."""
        placed = True
        while not stop.is_set():
            if placed:
                await pacer.wait()
            if stop.is_set():
                return
            try:
                placed = await step()
            except ExchangeError as error:  # e.g. a market lookup while the edge is down
                self.stats.errors[error.reason] += 1
                placed = True
                await asyncio.sleep(0.1)

    async def _funding(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.profile.funding_interval_seconds)
            if not stop.is_set():
                await self._funding_step()

    async def run(self, stop: asyncio.Event) -> None:
        rate = self.profile.orders_per_second
        trader_share = 1 - self.profile.maker_share - self.profile.taker_share
        roles: list[tuple[Callable[[], Awaitable[bool]], float]] = [
            (self._maker_step, rate * self.profile.maker_share),
            (self._taker_step, rate * self.profile.taker_share),
            (self._trader_step, rate * trader_share),
        ]
        tasks = [asyncio.create_task(self._funding(stop))]
        for step, share in roles:
            if share <= 0:
                continue
            pacer = Pacer(share)
            tasks += [
                asyncio.create_task(self._role(step, pacer, stop))
                for _ in range(self.profile.workers_per_role)
            ]
        await asyncio.gather(*tasks)

    async def resolve_unknown(self) -> list[str]:
        """Retries every placement of unknown outcome with its own key: each is then either
        acknowledged (placed once: a second retry must return the same order) or rejected.
        Returns the client order ids whose retries disagree (must be empty)."""
        disagreements: list[str] = []
        unknown, self.acknowledged.unknown_placements = self.acknowledged.unknown_placements, {}
        for client_order_id, placement in unknown.items():

            async def again(placement: UnknownPlacement = placement) -> OrderResult:
                return await self.clients[placement.account_id].place_order(
                    placement.symbol,
                    placement.side,
                    placement.quantity,
                    price=placement.price,
                    time_in_force=placement.time_in_force,
                    post_only=placement.post_only,
                    client_order_id=placement.client_order_id,
                )

            first, acknowledged = await self._call("retry", again)
            if not acknowledged:
                self.acknowledged.unknown_placements[client_order_id] = placement
                continue
            if first is None:
                continue
            second, _ = await self._call("retry", again)
            if second is None or second.order.order_id != first.order.order_id:
                disagreements.append(client_order_id)
            self.acknowledged.orders[client_order_id] = AcknowledgedOrder(
                placement.account_id, placement.symbol, first.order.order_id, first.order.status
            )
        return disagreements
