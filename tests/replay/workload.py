"""The seeded command stream the replay fixture is made of (tests/replay/fixture.py).

It covers every command type, in forms that are accepted and forms that are refused:
limit orders GTC / IOC / FOK and post-only, market orders by quantity and by quote budget,
all three self-trade prevention modes (each account trades against itself often), cancels by
order id and by client order id, amends that keep and that lose priority, cancel-all per
market and for every market, market modes (cancel-only, halted, back to normal), deposits,
withdrawals and adjustments, retries of keyed requests with the same body (the stored answer)
and with another one (IDEMPOTENCY_KEY_REUSED), unknown symbols and orders, prices off the
tick or out of the band, amounts out of range. Two markets share the quote asset. Small
per-account limits make every eviction path run.

The generator reads the engine it drives only to choose targets (an open order to cancel,
a best price to cross); what the fixture keeps is the commands, so the replay needs none of
this module.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from core.engine import Engine, EngineConfig
from core.engine.commands import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    KeyedCommand,
    PlaceOrder,
    SetMarketMode,
    Withdraw,
)
from core.engine.enums import MarketMode, OrderType, SelfTradePrevention, Side, TimeInForce
from core.engine.market import MarketSpec
from core.engine.testing import BTC, BTC_SCALE, USDT, USDT_SCALE, coarse_spec

ENGINE_CONFIG: Final = EngineConfig(
    open_orders_max_per_account=40,
    client_order_ids_max_per_account=300,
    transfer_ids_max_per_account=100,
    closed_orders_max_per_account=200,
    request_ids_max_per_account=150,
)
ETH_SCALE: Final = 8
ETH: Final = 10**ETH_SCALE
ACCOUNTS: Final = tuple(f"trader-{index}" for index in range(8))
TIMESTAMP_NS_START: Final = 1_800_000_000_000_000_000


def market_specs() -> tuple[MarketSpec, ...]:
    return (
        coarse_spec(),
        coarse_spec(
            symbol="ETH-USDT",
            base_asset="ETH",
            base_scale=ETH_SCALE,
            lot_step=ETH // 10,
            min_quantity=ETH // 10,
            max_quantity=10_000 * ETH,
            price_tick=USDT // 10,
            reference_price=100 * USDT,
            maker_fee_ppm=0,
            taker_fee_ppm=1_000,
            min_notional=1 * USDT,
        ),
    )


@dataclass(slots=True)
class _Mode:
    symbol: str
    mode: MarketMode
    commands_left: int  # until the market is set back to NORMAL


class Workload:
    """`commands()` yields the stream; `apply` each one to `engine` before asking the next
    (the generator looks at the engine's book and orders to choose what comes next)."""

    def __init__(self, engine: Engine, *, seed: int) -> None:
        self.engine = engine
        self.rng = random.Random(seed)
        self.specs = {spec.symbol: spec for spec in market_specs()}
        self.keyed: list[KeyedCommand] = []
        self.placed: list[PlaceOrder] = []
        self.transfers: list[Deposit | Withdraw | AdjustBalance] = []
        self.counter = 0
        self.mode: _Mode | None = None

    def bootstrap(self) -> Iterator[Command]:
        yield CreateAsset(asset="BTC", scale=BTC_SCALE)
        yield CreateAsset(asset="USDT", scale=USDT_SCALE)
        yield CreateAsset(asset="ETH", scale=ETH_SCALE)
        yield CreateAsset(asset="BTC", scale=BTC_SCALE)  # ASSET_ALREADY_EXISTS
        for spec in self.specs.values():
            yield CreateMarket(spec=spec)
        yield CreateMarket(spec=coarse_spec())  # MARKET_ALREADY_EXISTS
        yield CreateMarket(spec=coarse_spec(symbol="BAD-USDT", base_asset="BAD"))  # ASSET_UNKNOWN
        for account in ACCOUNTS:
            yield self._deposit(account, "BTC", 50 * BTC)
            yield self._deposit(account, "ETH", 500 * ETH)
            yield self._deposit(account, "USDT", 100_000 * USDT)

    def commands(self, count: int) -> Iterator[Command]:
        yield from self.bootstrap()
        for _ in range(count):
            yield self._next()

    # ------------------------------------------------------------------ the mix

    def _next(self) -> Command:
        self.counter += 1
        if self.mode is not None:
            self.mode.commands_left -= 1
            if self.mode.commands_left <= 0:
                symbol, self.mode = self.mode.symbol, None
                return self._keyed(SetMarketMode(symbol=symbol, mode=MarketMode.NORMAL))
        draw = self.rng.random()
        if draw < 0.44:
            return self._limit_order()
        if draw < 0.50:
            return self._market_order()
        if draw < 0.62:
            return self._cancel()
        if draw < 0.72:
            return self._amend()
        if draw < 0.74:
            return self._cancel_all()
        if draw < 0.82:
            return self._funding()
        if draw < 0.90:
            return self._retry()
        if draw < 0.905 and self.mode is None:
            return self._set_mode()
        if draw < 0.93:
            return self._malformed()
        return self._crossing_order()

    def _account(self) -> str:
        return self.rng.choice(ACCOUNTS)

    def _symbol(self) -> str:
        return self.rng.choice(tuple(self.specs))

    def _mid(self, symbol: str) -> int:
        spec = self.specs[symbol]
        depth = self.engine.book_depth(symbol, levels_max=1)
        if depth is not None and depth.bids and depth.asks:
            return (
                (depth.bids[0].price + depth.asks[0].price)
                // 2
                // spec.price_tick
                * (spec.price_tick)
            )
        view = self.engine.market(symbol)
        return view.reference_price if view is not None else spec.reference_price

    def _quantity(self, spec: MarketSpec, lots_max: int = 20) -> int:
        return self.rng.randint(1, lots_max) * spec.lot_step

    def _client_order_id(self) -> str:
        return f"c-{self.counter}" if self.rng.random() < 0.6 else ""

    def _stp(self) -> SelfTradePrevention:
        return self.rng.choice(tuple(SelfTradePrevention))

    def _limit_order(self) -> PlaceOrder:
        symbol = self._symbol()
        spec = self.specs[symbol]
        side = self.rng.choice(tuple(Side))
        offset = self.rng.randint(-3, 30) * spec.price_tick
        mid = self._mid(symbol)
        price = mid - offset if side is Side.BUY else mid + offset
        time_in_force = self.rng.choices(
            (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK), weights=(80, 10, 10)
        )[0]
        order = PlaceOrder(
            account_id=self._account(),
            symbol=symbol,
            side=side,
            quantity=self._quantity(spec),
            price=price,
            time_in_force=time_in_force,
            post_only=time_in_force is TimeInForce.GTC and self.rng.random() < 0.1,
            self_trade_prevention=self._stp(),
            client_order_id=self._client_order_id(),
        )
        self.placed.append(order)
        return order

    def _crossing_order(self) -> PlaceOrder:
        """A limit order through the other side's best levels (fills, and often trades with
        the account's own resting orders: self-trade prevention)."""
        symbol = self._symbol()
        spec = self.specs[symbol]
        side = self.rng.choice(tuple(Side))
        through = self.rng.randint(1, 8) * spec.price_tick
        mid = self._mid(symbol)
        order = PlaceOrder(
            account_id=self._account(),
            symbol=symbol,
            side=side,
            quantity=self._quantity(spec, lots_max=60),
            price=mid + through if side is Side.BUY else mid - through,
            time_in_force=self.rng.choice(tuple(TimeInForce)),
            self_trade_prevention=self._stp(),
            client_order_id=self._client_order_id(),
        )
        self.placed.append(order)
        return order

    def _market_order(self) -> PlaceOrder:
        symbol = self._symbol()
        spec = self.specs[symbol]
        side = self.rng.choice(tuple(Side))
        by_budget = side is Side.BUY and self.rng.random() < 0.5
        return PlaceOrder(
            account_id=self._account(),
            symbol=symbol,
            side=side,
            order_type=OrderType.MARKET,
            quantity=0 if by_budget else self._quantity(spec, lots_max=30),
            quote_quantity=self.rng.randint(10, 2_000) * USDT if by_budget else 0,
            time_in_force=TimeInForce.IOC,
            self_trade_prevention=self._stp(),
            client_order_id=self._client_order_id(),
        )

    def _open_order(self, account: str) -> tuple[int, str] | None:
        orders = self.engine.open_orders(account)
        if not orders:
            return None
        order = self.rng.choice(orders)
        return order.order_id, order.client_order_id

    def _request_id(self) -> str:
        return f"r-{self.counter}" if self.rng.random() < 0.7 else ""

    def _keyed(self, command: KeyedCommand) -> KeyedCommand:
        if isinstance(command, SetMarketMode):
            command = SetMarketMode(
                symbol=command.symbol,
                mode=command.mode,
                operator_id="operator-1",
                request_id=f"r-{self.counter}",
            )
        if command.request_id:
            self.keyed.append(command)
        return command

    def _cancel(self) -> CancelOrder:
        account = self._account()
        target = self._open_order(account)
        if target is None or self.rng.random() < 0.05:
            return CancelOrder(account_id=account, order_id=10**9, request_id=self._request_id())
        order_id, client_order_id = target
        if client_order_id and self.rng.random() < 0.4:
            command = CancelOrder(
                account_id=account, client_order_id=client_order_id, request_id=self._request_id()
            )
        else:
            command = CancelOrder(
                account_id=account, order_id=order_id, request_id=self._request_id()
            )
        return self._keyed(command)  # type: ignore[return-value]

    def _amend(self) -> AmendOrder:
        account = self._account()
        target = self._open_order(account)
        order_id = 10**9 if target is None else target[0]
        view = self.engine.order(order_id)
        if view is None:
            return AmendOrder(account_id=account, order_id=order_id, price=0, quantity=1)
        spec = self.specs[view.symbol]
        kind = self.rng.random()
        price, quantity = 0, 0
        if kind < 0.4:  # smaller: keeps priority
            quantity = max(spec.lot_step, view.quantity - spec.lot_step)
        elif kind < 0.8:  # another price: loses priority
            price = view.price + self.rng.randint(-5, 5) * spec.price_tick
        else:  # both, sometimes off the tick
            price = view.price + self.rng.choice((1, spec.price_tick))
            quantity = view.quantity + spec.lot_step
        command = AmendOrder(
            account_id=account,
            order_id=order_id,
            price=price,
            quantity=quantity,
            request_id=self._request_id(),
        )
        return self._keyed(command)  # type: ignore[return-value]

    def _cancel_all(self) -> CancelAllOrders:
        symbol = self._symbol() if self.rng.random() < 0.7 else ""
        command = CancelAllOrders(
            account_id=self._account(), symbol=symbol, request_id=self._request_id()
        )
        return self._keyed(command)  # type: ignore[return-value]

    def _deposit(self, account: str, asset: str, amount: int) -> Deposit:
        deposit = Deposit(
            account_id=account, asset=asset, amount=amount, transfer_id=f"t-{self.counter}"
        )
        self.counter += 1
        self.transfers.append(deposit)
        return deposit

    def _funding(self) -> Deposit | Withdraw | AdjustBalance:
        account = self._account()
        asset = self.rng.choice(("BTC", "ETH", "USDT"))
        unit = {"BTC": BTC, "ETH": ETH, "USDT": USDT}[asset]
        draw = self.rng.random()
        transfer: Deposit | Withdraw | AdjustBalance
        if draw < 0.45:
            return self._deposit(account, asset, self.rng.randint(1, 50) * unit)
        if draw < 0.85:  # a withdrawal, sometimes of more than is available
            amount = self.rng.randint(1, 80) * unit
            transfer = Withdraw(
                account_id=account, asset=asset, amount=amount, transfer_id=f"t-{self.counter}"
            )
        else:
            delta = self.rng.randint(-5, 5) * unit or unit
            transfer = AdjustBalance(
                account_id=account,
                asset=asset,
                delta=delta,
                transfer_id=f"t-{self.counter}",
                memo="replay fixture",
            )
        self.transfers.append(transfer)
        return transfer

    def _retry(self) -> Command:
        """An earlier request again: the same body (its stored answer) or the same key with
        another body (refused)."""
        draw = self.rng.random()
        if draw < 0.4 and self.keyed:
            command = self.rng.choice(self.keyed[-300:])
            if self.rng.random() < 0.8 or isinstance(command, SetMarketMode):
                return command
            if isinstance(command, CancelAllOrders):
                return CancelAllOrders(
                    account_id=command.account_id,
                    symbol="" if command.symbol else "BTC-USDT",
                    request_id=command.request_id,
                )
            return CancelOrder(
                account_id=command.account_id, order_id=10**9 + 1, request_id=command.request_id
            )
        if draw < 0.7 and self.placed:
            return self.rng.choice(self.placed[-500:])  # client order id retries
        if self.transfers:
            transfer = self.rng.choice(self.transfers[-200:])
            if self.rng.random() < 0.8 or isinstance(transfer, AdjustBalance):
                return transfer
            return Deposit(
                account_id=transfer.account_id,
                asset=transfer.asset,
                amount=transfer.amount + 1,
                transfer_id=transfer.transfer_id,
            )
        return self._limit_order()

    def _set_mode(self) -> SetMarketMode:
        symbol = self._symbol()
        mode = self.rng.choice((MarketMode.CANCEL_ONLY, MarketMode.HALTED))
        self.mode = _Mode(symbol=symbol, mode=mode, commands_left=self.rng.randint(20, 120))
        return self._keyed(SetMarketMode(symbol=symbol, mode=mode))  # type: ignore[return-value]

    def _malformed(self) -> Command:
        """Commands the engine refuses by name."""
        spec = self.specs[self._symbol()]
        account = self._account()
        choices: tuple[Command, ...] = (
            PlaceOrder(account_id=account, symbol="DOGE-USDT", side=Side.BUY, quantity=1, price=1),
            PlaceOrder(
                account_id=account,
                symbol=spec.symbol,
                side=Side.SELL,
                quantity=spec.lot_step,
                price=spec.reference_price + 1,  # off the tick
            ),
            PlaceOrder(
                account_id=account,
                symbol=spec.symbol,
                side=Side.BUY,
                quantity=spec.lot_step + 1,  # off the lot step
                price=spec.reference_price,
            ),
            PlaceOrder(
                account_id=account,
                symbol=spec.symbol,
                side=Side.BUY,
                quantity=spec.lot_step,
                price=spec.reference_price * 3,  # out of the band
            ),
            PlaceOrder(
                account_id=account,
                symbol=spec.symbol,
                side=Side.SELL,
                order_type=OrderType.MARKET,
                quote_quantity=100 * USDT,  # a quote budget on a sell
                time_in_force=TimeInForce.IOC,
            ),
            Deposit(
                account_id=account, asset="USDT", amount=2**80, transfer_id=f"t-{self.counter}"
            ),
            Withdraw(account_id=account, asset="XRP", amount=1, transfer_id=f"t-{self.counter}"),
        )
        return self.rng.choice(choices)
