"""The matching + risk engine: a pure, deterministic state machine.

`Engine.apply(command, engine_seq=..., timestamp_ns=...)` is the only way state changes. The
engine reads no clock, no randomness and does no I/O: time and sequence numbers come in with
the command, order ids are the engine_seq of the placing command, trade ids come from a
counter in the state. The same commands with the same engine_seq / timestamp_ns always
produce the same events, outcomes and state hash.

Invariants (checked by `check_invariants`, by cheap runtime checks that raise
EngineInvariantError, and by the property tests):
1. Each market's book keeps price-time priority and is never crossed at rest (see book.py).
2. For every (account, asset): available >= 0, held >= 0 and held == the sum of
   `reserved_amount` of the account's open orders on that asset.
3. For every asset: sum over all accounts (fee account included) of available + held equals
   the asset's supply; only Deposit / Withdraw / AdjustBalance change the supply.
4. A buy's reservation covers the worst case of its remaining quantity (notional at its limit
   price plus the taker fee, with the cumulative fee ceiling); a sell reserves its remaining
   base quantity. Fills only take from `held`; leftovers are released when the order closes.
5. Every notional is exact (price * quantity divisible by 10**base_scale); a remainder raises.
6. engine_seq strictly increases from command to command (else EngineInvariantError); each
   event stream is numbered 1, 2, 3 ... without gaps.
7. An idempotent retry (same client order id / transfer id / request id, equal command)
   changes nothing and emits nothing; it returns the stored original outcome. The same key
   with another command is rejected IDEMPOTENCY_KEY_REUSED (DUPLICATE_CLIENT_ORDER_ID for
   orders) and is not remembered.

Business rejections are returned (`Outcome.reason`, plus an OrderRejected event for order
commands); they never raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from core.engine.balances import FEE_ACCOUNT_ID, Balance
from core.engine.book import BookSide, Order, OrderBook, PriceLevel
from core.engine.commands import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    FundingCommand,
    KeyedCommand,
    PlaceOrder,
    SetMarketMode,
    Withdraw,
)
from core.engine.enums import (
    CancelReason,
    MarketMode,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.errors import EngineInvariantError
from core.engine.events import (
    AssetCreated,
    BalanceAdjusted,
    Event,
    FundsDeposited,
    FundsReleased,
    FundsReserved,
    FundsWithdrawn,
    MarketCreated,
    MarketModeChanged,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
)
from core.engine.fast_frozen import positional_constructor
from core.engine.idempotency import PerAccountFifo
from core.engine.market import MarketSpec, validate_asset, validate_market_spec
from core.engine.money import (
    BPS,
    INT64_MAX,
    PPM,
    band_price_max,
    band_price_min,
    ceil_div,
    fee_for,
    notional,
)
from core.engine.results import (
    ApplyResult,
    BalanceView,
    BookDepth,
    MarketView,
    OrderView,
    Outcome,
)

if TYPE_CHECKING:
    from core.engine.snapshot import SnapshotCapture

# Why matching stopped (internal).
_STOP_COMPLETE: Final = 0  # taker filled, or a quote budget cannot buy one more lot
_STOP_SELF_TRADE: Final = 1  # self-trade prevention ended the taker
_STOP_LIMIT: Final = 2  # the best opposite level is beyond the limit price / band edge
_STOP_EMPTY: Final = 3  # the opposite side ran out

_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_CANCEL_NEWEST: Final = SelfTradePrevention.CANCEL_NEWEST
_CANCEL_BOTH: Final = SelfTradePrevention.CANCEL_BOTH
_CANCEL_OLDEST: Final = SelfTradePrevention.CANCEL_OLDEST
_FILLED: Final = OrderStatus.FILLED
_PARTIALLY_FILLED: Final = OrderStatus.PARTIALLY_FILLED
_NORMAL: Final = MarketMode.NORMAL
_GTC: Final = TimeInForce.GTC
_DUPLICATE: Final = True  # ApplyResult.duplicate
_KEPT: Final = True  # Outcome.priority_kept
_NOT_DUPLICATE: Final = False
_LIMIT: Final = OrderType.LIMIT

# Hot-path constructors of frozen events and results, taking fields positionally in field
# order (see fast_frozen.py); everything else uses the keyword constructors.
_new_order_accepted = positional_constructor(OrderAccepted)
_new_funds_reserved = positional_constructor(FundsReserved)
_new_funds_released = positional_constructor(FundsReleased)
_new_trade_executed = positional_constructor(TradeExecuted)
_new_order_cancelled = positional_constructor(OrderCancelled)
_new_order_expired = positional_constructor(OrderExpired)
_new_order_rejected = positional_constructor(OrderRejected)
_new_outcome = positional_constructor(Outcome)
_new_result = positional_constructor(ApplyResult)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Limits. Each bounds memory per account; eviction is FIFO and deterministic."""

    open_orders_max_per_account: int = 1_000
    client_order_ids_max_per_account: int = 10_000
    transfer_ids_max_per_account: int = 10_000
    closed_orders_max_per_account: int = 1_000
    # Retention window of request ids (cancel, cancel-all, amend; per operator: market mode).
    request_ids_max_per_account: int = 10_000


class Market:
    """Runtime state of one market: spec (with hot fields copied out), mode, book, stream."""

    __slots__ = (
        "band_bps",
        "base_asset",
        "base_unit",
        "book",
        "cells",
        "lot_step",
        "maker_fee_ppm",
        "max_quantity",
        "min_notional",
        "min_quantity",
        "mode",
        "price_tick",
        "quote_asset",
        "reference_price",
        "spec",
        "stream_seq",
        "symbol",
        "taker_fee_ppm",
    )

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.base_asset = spec.base_asset
        self.quote_asset = spec.quote_asset
        self.base_unit = 10**spec.base_scale
        self.price_tick = spec.price_tick
        self.lot_step = spec.lot_step
        self.min_quantity = spec.min_quantity
        self.max_quantity = spec.max_quantity
        self.min_notional = spec.min_notional
        self.band_bps = spec.price_band_bps
        self.maker_fee_ppm = spec.maker_fee_ppm
        self.taker_fee_ppm = spec.taker_fee_ppm
        self.reference_price = spec.reference_price
        self.mode = MarketMode.NORMAL
        self.stream_seq = 0
        self.book = OrderBook(spec.symbol)
        # Derived cache (not state): account id -> (base cell, quote cell) of this market, filled
        # when an account first places here. Cells are never removed from Engine._balances.
        self.cells: dict[str, tuple[Balance, Balance]] = {}

    def next_seq(self) -> int:
        self.stream_seq += 1
        return self.stream_seq


OrderRecord = tuple[PlaceOrder, Outcome]
TransferRecord = tuple[FundingCommand, Outcome]
RequestRecord = tuple[KeyedCommand, Outcome]


class Engine:
    """The state machine. See the module docstring for its invariants."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        if self.config.open_orders_max_per_account < 1:
            raise EngineInvariantError("open_orders_max_per_account must be positive")
        self._engine_seq_last = 0
        self._trade_id_last = 0
        self._account_stream_seq = 0
        self._asset_scales: dict[str, int] = {}
        self._asset_supply: dict[str, int] = {}
        self._markets: dict[str, Market] = {}
        self._balances: dict[tuple[str, str], Balance] = {}
        self._orders: dict[int, Order] = {}
        self._open_orders: dict[str, dict[int, Order]] = {}
        self._live_client_order_ids: dict[str, dict[str, int]] = {}
        self._order_requests: PerAccountFifo[str, OrderRecord] = PerAccountFifo(
            self.config.client_order_ids_max_per_account
        )
        self._transfer_requests: PerAccountFifo[str, TransferRecord] = PerAccountFifo(
            self.config.transfer_ids_max_per_account
        )
        self._closed_orders: PerAccountFifo[int, OrderStatus] = PerAccountFifo(
            self.config.closed_orders_max_per_account
        )
        # request_id -> (command, outcome): per account, and per operator for market modes.
        self._command_requests: PerAccountFifo[str, RequestRecord] = PerAccountFifo(
            self.config.request_ids_max_per_account
        )
        self._operator_requests: PerAccountFifo[str, RequestRecord] = PerAccountFifo(
            self.config.request_ids_max_per_account
        )
        # Scratch of the command being applied (not state): its engine_seq, time and events.
        self._command_seq = 0
        self._command_ns = 0
        self._events: list[Event] = []
        self._handlers: dict[type[Any], Callable[[Any], ApplyResult]] = {
            PlaceOrder: self._place,
            CancelOrder: self._keyed(self._cancel),
            CancelAllOrders: self._keyed(self._cancel_all),
            AmendOrder: self._keyed(self._amend),
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            AdjustBalance: self._adjust,
            CreateAsset: self._create_asset,
            CreateMarket: self._create_market,
            SetMarketMode: self._keyed(self._set_market_mode),
        }

    # ------------------------------------------------------------------ entry point

    def apply(self, command: Command, *, engine_seq: int, timestamp_ns: int) -> ApplyResult:
        """Apply one command. Rejections are returned; an invariant breach raises."""
        if engine_seq <= self._engine_seq_last:
            msg = f"engine_seq {engine_seq} does not follow {self._engine_seq_last}"
            raise EngineInvariantError(msg)
        handler = self._handlers.get(type(command))
        if handler is None:
            msg = f"unknown command type {type(command).__name__}"
            raise EngineInvariantError(msg)
        self._command_seq = engine_seq
        self._command_ns = timestamp_ns
        self._events = []
        result = handler(command)
        if not result.duplicate:
            self._engine_seq_last = engine_seq
        return result

    def _keyed(self, handler: Callable[[Any], ApplyResult]) -> Callable[[Any], ApplyResult]:
        """`handler` with idempotency by (caller, request_id): a command with a key seen
        before returns the stored outcome if it is equal (nothing applied, no events), else
        IDEMPOTENCY_KEY_REUSED (not stored); a new key stores its outcome, rejections too.
        The caller is the account, or the operator for SetMarketMode (a table of its own)."""
        command_requests = self._command_requests
        operator_requests = self._operator_requests

        def apply_keyed(command: KeyedCommand) -> ApplyResult:
            request_id = command.request_id
            if not request_id:
                return handler(command)
            if isinstance(command, SetMarketMode):
                table, caller = operator_requests, command.operator_id
            else:
                table, caller = command_requests, command.account_id
            record = table.get(caller, request_id)
            if record is not None:
                if record[0] == command:
                    return _new_result(record[1], (), _DUPLICATE)
                reason = RejectReason.IDEMPOTENCY_KEY_REUSED
                return ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason), ())
            result = handler(command)
            table.put(caller, request_id, (command, result.outcome))
            return result

        return apply_keyed

    def placed_order_request(self, account_id: str, client_order_id: str) -> PlaceOrder | None:
        """The remembered PlaceOrder of this client order id (None if unknown or evicted)."""
        record = self._order_requests.get(account_id, client_order_id)
        return None if record is None else record[0]

    @property
    def engine_seq_last(self) -> int:
        """The engine_seq of the last command that was not an idempotent duplicate."""
        return self._engine_seq_last

    @property
    def trade_id_last(self) -> int:
        """The id of the last trade (trade ids are 1, 2, 3 ... across all markets)."""
        return self._trade_id_last

    # ------------------------------------------------------------------ queries

    def order(self, order_id: int) -> OrderView | None:
        """An open order by id (closed orders are reported through events only)."""
        order = self._orders.get(order_id)
        return None if order is None else order.view()

    def closed_order_status(self, account_id: str, order_id: int) -> OrderStatus | None:
        """Final status of one of the account's recently closed orders, if remembered."""
        return self._closed_orders.get(account_id, order_id)

    def open_orders(self, account_id: str, symbol: str = "") -> list[OrderView]:
        orders = self._open_orders.get(account_id, {})
        return [
            orders[order_id].view()
            for order_id in sorted(orders)
            if not symbol or orders[order_id].symbol == symbol
        ]

    def balance(self, account_id: str, asset: str) -> BalanceView:
        cell = self._balances.get((account_id, asset))
        if cell is None:
            return BalanceView(account_id=account_id, asset=asset, available=0, held=0)
        return BalanceView(
            account_id=account_id, asset=asset, available=cell.available, held=cell.held
        )

    def balances(self, account_id: str) -> dict[str, BalanceView]:
        return {
            asset: self.balance(account_id, asset)
            for (owner, asset) in sorted(self._balances)
            if owner == account_id
        }

    def all_balances(self) -> list[BalanceView]:
        """Every balance cell, sorted by (account, asset): the reconciliation view."""
        return [self.balance(account_id, asset) for account_id, asset in sorted(self._balances)]

    def asset_supply(self, asset: str) -> int:
        return self._asset_supply.get(asset, 0)

    def assets(self) -> dict[str, int]:
        """Asset code -> scale."""
        return dict(sorted(self._asset_scales.items()))

    def market(self, symbol: str) -> MarketView | None:
        market = self._markets.get(symbol)
        if market is None:
            return None
        return MarketView(
            spec=market.spec,
            mode=market.mode,
            reference_price=market.reference_price,
            seq=market.stream_seq,
        )

    def symbols(self) -> list[str]:
        return sorted(self._markets)

    def book_depth(self, symbol: str, levels_max: int = 50) -> BookDepth | None:
        market = self._markets.get(symbol)
        if market is None:
            return None
        return BookDepth(
            symbol=symbol,
            seq=market.stream_seq,
            bids=market.book.bids.depth(levels_max),
            asks=market.book.asks.depth(levels_max),
        )

    def book_orders(self, symbol: str, side: Side) -> list[OrderView]:
        """Resting orders of one side in priority order (best price first, FIFO)."""
        market = self._markets.get(symbol)
        if market is None:
            return []
        return [order.view() for order in market.book.side(side).orders_in_priority()]

    def account_stream_seq(self) -> int:
        return self._account_stream_seq

    # ------------------------------------------------------------------ helpers

    def _balance_cell(self, account_id: str, asset: str) -> Balance:
        key = (account_id, asset)
        cell = self._balances.get(key)
        if cell is None:
            cell = self._balances[key] = Balance(account_id, asset)
        return cell

    def _order_result(self, order_id: int, order: Order) -> ApplyResult:
        """Accepted order command: the order's status and fills, with the events so far."""
        outcome = _new_outcome(
            self._command_seq, None, order_id, order.status, order.quantity_filled, ()
        )
        return _new_result(outcome, tuple(self._events), _NOT_DUPLICATE)

    def _result(self, outcome: Outcome, event: Event) -> ApplyResult:
        self._events.append(event)
        return ApplyResult(outcome, tuple(self._events))

    def _next_account_seq(self) -> int:
        self._account_stream_seq += 1
        return self._account_stream_seq

    def _reject_order(
        self,
        *,
        market: Market | None,
        account_id: str,
        client_order_id: str,
        order_id: int,
        reason: RejectReason,
        is_place: bool = False,
    ) -> ApplyResult:
        if market is None:
            symbol = ""
            seq = self._next_account_seq()
        else:
            symbol = market.symbol
            seq = market.next_seq()
        self._events.append(
            _new_order_rejected(
                symbol,
                seq,
                self._command_seq,
                self._command_ns,
                account_id,
                client_order_id,
                order_id,
                reason,
            )
        )
        status = OrderStatus.REJECTED if is_place else None
        outcome = _new_outcome(self._command_seq, reason, order_id, status, 0, ())
        return _new_result(outcome, tuple(self._events), _NOT_DUPLICATE)

    def _release(self, market: Market, order: Order, amount: int) -> None:
        """Move `amount` of the order's reservation from held back to available."""
        if amount <= 0 or amount > order.reserved_amount:
            msg = f"invalid release of {amount} from {order!r} ({order.reserved_amount} held)"
            raise EngineInvariantError(msg)
        cell = order.reserve_balance
        cell.held -= amount
        cell.available += amount
        order.reserved_amount -= amount
        if cell.held < 0:
            raise EngineInvariantError(f"negative held after release: {cell!r}")
        market.stream_seq += 1
        self._events.append(
            _new_funds_released(
                market.symbol,
                market.stream_seq,
                self._command_seq,
                self._command_ns,
                order.account_id,
                cell.asset,
                amount,
                order.order_id,
            )
        )

    def _reserve(self, market: Market, order: Order, amount: int) -> None:
        """Move `amount` from available to held for the order."""
        cell = order.reserve_balance
        if amount <= 0 or amount > cell.available:
            msg = f"invalid reservation of {amount} on {cell!r}"
            raise EngineInvariantError(msg)
        cell.available -= amount
        cell.held += amount
        order.reserved_amount += amount
        market.stream_seq += 1
        self._events.append(
            _new_funds_reserved(
                market.symbol,
                market.stream_seq,
                self._command_seq,
                self._command_ns,
                order.account_id,
                cell.asset,
                amount,
                order.order_id,
            )
        )

    def _close(
        self,
        market: Market,
        order: Order,
        status: OrderStatus,
    ) -> None:
        """Final bookkeeping of an order that is no longer (or never was) in the book."""
        order.status = status
        if order.reserved_amount:
            self._release(market, order, order.reserved_amount)
        account_id = order.account_id
        order_id = order.order_id
        if self._orders.pop(order_id, None) is not None:
            del self._open_orders[account_id][order_id]
            if order.client_order_id:
                del self._live_client_order_ids[account_id][order.client_order_id]
        self._closed_orders.put(account_id, order_id, status)

    def _rest(self, market: Market, order: Order) -> None:
        """Put a (new or requeued) order into the book and the open-order indexes."""
        book = market.book
        price = order.price
        if order.side is _BUY:
            book.bids.add(order)
            opposite_keys = book.asks.keys
            crossed = bool(opposite_keys) and -opposite_keys[-1] <= price
        else:
            book.asks.add(order)
            opposite_keys = book.bids.keys
            crossed = bool(opposite_keys) and opposite_keys[-1] >= price
        if crossed:
            raise EngineInvariantError(f"book {market.symbol} crossed after resting {order!r}")
        account_id = order.account_id
        order_id = order.order_id
        self._orders[order_id] = order
        by_account = self._open_orders.get(account_id)
        if by_account is None:
            by_account = self._open_orders[account_id] = {}
        by_account[order_id] = order
        if order.client_order_id:
            live = self._live_client_order_ids.get(account_id)
            if live is None:
                live = self._live_client_order_ids[account_id] = {}
            live[order.client_order_id] = order_id

    def _cancel_resting(self, market: Market, order: Order, reason: CancelReason) -> None:
        side = market.book.bids if order.side is _BUY else market.book.asks
        side.remove(order)
        market.stream_seq += 1
        self._events.append(
            _new_order_cancelled(
                market.symbol,
                market.stream_seq,
                self._command_seq,
                self._command_ns,
                order.order_id,
                order.account_id,
                reason,
                order.quantity_remaining,
            )
        )
        self._close(market, order, OrderStatus.CANCELLED)

    @staticmethod
    def _buy_reserve_needed(market: Market, order: Order, price: int, remaining: int) -> int:
        """Worst-case cost of `remaining` at `price` as a taker, given the fees already paid."""
        amount = notional(price, remaining, market.base_unit)
        fee_total = ceil_div(order.fee_ppm_units + amount * market.taker_fee_ppm, PPM)
        return amount + fee_total - order.fee_paid

    # ------------------------------------------------------------------ matching

    def _match(  # noqa: PLR0912, PLR0915  (hot loop kept in one frame on purpose)
        self,
        market: Market,
        taker: Order,
        limit_key: int,
        budget: int,
    ) -> tuple[int, int]:
        """Match `taker` against the opposite side while its key is >= limit_key.

        Keys are "best last" (bid key = price, ask key = -price), so for a buy the limit key is
        -limit_price and for a sell it is +limit_price. `budget` > 0 means a market buy that
        spends a quote budget. Returns (why it stopped, budget left).
        """
        is_buy = taker.side is _BUY
        book = market.book
        opposite: BookSide = book.asks if is_buy else book.bids
        keys = opposite.keys
        levels = opposite.levels
        sign = opposite.sign
        base_unit = market.base_unit
        lot_step = market.lot_step
        maker_ppm = market.maker_fee_ppm
        taker_ppm = market.taker_fee_ppm
        symbol = market.symbol
        fee_cell = self._balance_cell(FEE_ACCOUNT_ID, market.quote_asset)
        taker_account = taker.account_id
        taker_order_id = taker.order_id
        taker_side = taker.side
        taker_reserve = taker.reserve_balance
        taker_proceeds = taker.proceeds_balance
        append = self._events.append
        new_trade = _new_trade_executed
        engine_seq = self._command_seq
        timestamp_ns = self._command_ns
        budget_mode = budget > 0
        remaining = taker.quantity_remaining
        stop = -1
        last_price = 0
        while stop < 0:
            if not keys:
                stop = _STOP_EMPTY
                break
            key = keys[-1]
            if key < limit_key:
                stop = _STOP_LIMIT
                break
            price = key * sign
            level: PriceLevel = levels[price]
            orders = level.orders
            while True:
                if budget_mode:
                    affordable = budget * base_unit // price
                    remaining = affordable - affordable % lot_step
                if remaining == 0:
                    stop = _STOP_COMPLETE
                    break
                if level.count == 0:
                    break
                maker = orders[0]
                if not maker.resting:
                    orders.popleft()
                    level.dead -= 1
                    continue
                if maker.account_id == taker_account:
                    mode = taker.self_trade_prevention
                    if mode is _CANCEL_NEWEST:
                        stop = _STOP_SELF_TRADE
                        break
                    self._cancel_head(market, level, maker)
                    if mode is _CANCEL_BOTH:
                        stop = _STOP_SELF_TRADE
                        break
                    continue
                maker_remaining = maker.quantity_remaining
                quantity = remaining if remaining < maker_remaining else maker_remaining
                quote_amount, inexact = divmod(price * quantity, base_unit)
                if inexact:
                    msg = f"inexact notional {price}*{quantity}/{base_unit} in {symbol}"
                    raise EngineInvariantError(msg)
                # Fees: ceiling of each order's cumulative fee (see money.py).
                units = maker.fee_ppm_units + quote_amount * maker_ppm
                maker.fee_ppm_units = units
                total = -(-units // PPM)
                maker_fee = total - maker.fee_paid
                maker.fee_paid = total
                units = taker.fee_ppm_units + quote_amount * taker_ppm
                taker.fee_ppm_units = units
                total = -(-units // PPM)
                taker_fee = total - taker.fee_paid
                taker.fee_paid = total
                if is_buy:
                    cost = quote_amount + taker_fee
                    taker.reserved_amount -= cost
                    taker_reserve.held -= cost
                    taker_proceeds.available += quantity
                    maker.reserved_amount -= quantity
                    maker.reserve_balance.held -= quantity
                    maker.proceeds_balance.available += quote_amount - maker_fee
                else:
                    cost = quote_amount + maker_fee
                    taker.reserved_amount -= quantity
                    taker_reserve.held -= quantity
                    taker_proceeds.available += quote_amount - taker_fee
                    maker.reserved_amount -= cost
                    maker.reserve_balance.held -= cost
                    maker.proceeds_balance.available += quantity
                fee_cell.available += maker_fee + taker_fee
                if maker.reserved_amount < 0 or taker.reserved_amount < 0:
                    msg = f"reservation overdrawn: maker {maker!r} taker {taker!r}"
                    raise EngineInvariantError(msg)
                maker_remaining -= quantity
                maker.quantity_remaining = maker_remaining
                maker.quantity_filled += quantity
                level.quantity -= quantity
                taker.quantity_filled += quantity
                if budget_mode:
                    budget -= quote_amount
                    taker_remaining = 0
                else:
                    remaining -= quantity
                    taker.quantity_remaining = remaining
                    taker_remaining = remaining
                last_price = price
                self._trade_id_last += 1
                market.stream_seq += 1
                append(
                    new_trade(
                        symbol,
                        market.stream_seq,
                        engine_seq,
                        timestamp_ns,
                        self._trade_id_last,
                        maker.order_id,
                        taker_order_id,
                        maker.account_id,
                        taker_account,
                        taker_side,
                        price,
                        quantity,
                        quote_amount,
                        maker_fee,
                        taker_fee,
                        maker_remaining,
                        taker_remaining,
                    )
                )
                if maker_remaining == 0:
                    orders.popleft()
                    maker.resting = False
                    level.count -= 1
                    self._close(market, maker, _FILLED)
                else:
                    maker.status = _PARTIALLY_FILLED
            if level.count == 0:
                keys.pop()
                del levels[price]
        if last_price:
            market.reference_price = last_price
        return stop, budget

    def _cancel_head(self, market: Market, level: PriceLevel, order: Order) -> None:
        """Self-trade prevention: cancel the resting order at the head of the level being
        matched. The caller drops the level if it empties."""
        level.orders.popleft()
        order.resting = False
        level.count -= 1
        level.quantity -= order.quantity_remaining
        market.stream_seq += 1
        self._events.append(
            _new_order_cancelled(
                market.symbol,
                market.stream_seq,
                self._command_seq,
                self._command_ns,
                order.order_id,
                order.account_id,
                CancelReason.SELF_TRADE_PREVENTION,
                order.quantity_remaining,
            )
        )
        self._close(market, order, OrderStatus.CANCELLED)

    @staticmethod
    def _walk_fillable(
        market: Market,
        *,
        side: Side,
        account_id: str,
        self_trade_prevention: SelfTradePrevention,
        limit_key: int,
        quantity: int,
    ) -> tuple[int, int]:
        """What matching would fill right now: (quantity fillable up to `quantity`, its
        notional). Mirrors `_match`: CANCEL_OLDEST skips own orders, other modes stop."""
        opposite = market.book.asks if side is _BUY else market.book.bids
        levels = opposite.levels
        sign = opposite.sign
        base_unit = market.base_unit
        fillable = 0
        amount = 0
        for key in reversed(opposite.keys):
            if key < limit_key:
                break
            price = key * sign
            for maker in levels[price].orders:
                if not maker.resting:
                    continue
                if maker.account_id == account_id:
                    if self_trade_prevention is _CANCEL_OLDEST:
                        continue
                    return fillable, amount
                take = min(quantity - fillable, maker.quantity_remaining)
                fillable += take
                amount += notional(price, take, base_unit)
                if fillable == quantity:
                    return fillable, amount
        return fillable, amount

    # ------------------------------------------------------------------ place

    @staticmethod
    def _check_quantity(market: Market, quantity: int) -> RejectReason | None:
        if quantity <= 0:
            return RejectReason.QUANTITY_INVALID
        if quantity > INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        if quantity % market.lot_step:
            return RejectReason.QUANTITY_STEP_VIOLATION
        if quantity < market.min_quantity:
            return RejectReason.QUANTITY_BELOW_MIN
        if quantity > market.max_quantity:
            return RejectReason.QUANTITY_ABOVE_MAX
        return None

    @staticmethod
    def _check_limit_price(  # noqa: PLR0911  (one guard per named rejection)
        market: Market, price: int, quantity: int, *, check_band: bool = True
    ) -> RejectReason | None:
        if price <= 0:
            return RejectReason.PRICE_INVALID
        if price > INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        if price % market.price_tick:
            return RejectReason.PRICE_TICK_VIOLATION
        # _check_quantity and price_within_band, inlined: this runs for every limit order.
        if quantity <= 0:
            return RejectReason.QUANTITY_INVALID
        if quantity > INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        if quantity % market.lot_step:
            return RejectReason.QUANTITY_STEP_VIOLATION
        if quantity < market.min_quantity:
            return RejectReason.QUANTITY_BELOW_MIN
        if quantity > market.max_quantity:
            return RejectReason.QUANTITY_ABOVE_MAX
        if check_band:
            reference_price = market.reference_price
            scaled = price * BPS
            if not (
                reference_price * (BPS - market.band_bps)
                <= scaled
                <= reference_price * (BPS + market.band_bps)
            ):
                return RejectReason.PRICE_OUT_OF_BAND
        if price * quantity // market.base_unit < market.min_notional:
            return RejectReason.NOTIONAL_BELOW_MIN
        return None

    @classmethod
    def _check_market_place(  # noqa: PLR0911  (one guard per named rejection)
        cls, market: Market, command: PlaceOrder
    ) -> RejectReason | None:
        """Static checks of a new MARKET order in a NORMAL market (no book, no balances)."""
        tif = command.time_in_force
        if tif is TimeInForce.GTC or command.post_only:
            return RejectReason.TIME_IN_FORCE_INVALID
        if command.price != 0:
            return RejectReason.PRICE_INVALID
        quantity = command.quantity
        budget = command.quote_quantity
        if quantity < 0 or budget < 0 or (quantity > 0) == (budget > 0):
            return RejectReason.QUANTITY_INVALID
        if budget:
            if command.side is not _BUY:
                return RejectReason.QUANTITY_INVALID
            if tif is not TimeInForce.IOC:
                return RejectReason.TIME_IN_FORCE_INVALID
            if budget > INT64_MAX:
                return RejectReason.AMOUNT_OUT_OF_RANGE
            if budget < market.min_notional:
                return RejectReason.NOTIONAL_BELOW_MIN
            if budget + fee_for(budget, market.taker_fee_ppm) > INT64_MAX:
                return RejectReason.AMOUNT_OUT_OF_RANGE
            return None
        return cls._check_quantity(market, quantity)

    def _check_limit_place(  # noqa: PLR0911, PLR0912  (one guard per named rejection)
        self, market: Market, command: PlaceOrder
    ) -> tuple[RejectReason | None, int, int]:
        """Every check of a new LIMIT order in a NORMAL market: static, then against the book
        and the balances. Returns (reason, reservation, limit key). The hot path: one frame."""
        tif = command.time_in_force
        post_only = command.post_only
        if post_only and tif is not _GTC:
            return RejectReason.TIME_IN_FORCE_INVALID, 0, 0
        if command.quote_quantity != 0:
            return RejectReason.QUANTITY_INVALID, 0, 0
        price = command.price
        quantity = command.quantity
        reason = Engine._check_limit_price(market, price, quantity)
        if reason is not None:
            return reason, 0, 0
        account_id = command.account_id
        is_buy = command.side is _BUY
        if is_buy:
            limit_key = -price
            opposite_keys = market.book.asks.keys
        else:
            limit_key = price
            opposite_keys = market.book.bids.keys
        if tif is _GTC:
            open_orders = self._open_orders.get(account_id)
            if (
                open_orders is not None
                and len(open_orders) >= self.config.open_orders_max_per_account
            ):
                return RejectReason.OPEN_ORDER_LIMIT_EXCEEDED, 0, 0
            if post_only and opposite_keys and opposite_keys[-1] >= limit_key:
                return RejectReason.POST_ONLY_WOULD_TAKE, 0, 0
        cells = market.cells.get(account_id)
        if is_buy:
            # notional(price, quantity) + fee_for(amount, taker_fee_ppm), inlined.
            amount, inexact = divmod(price * quantity, market.base_unit)
            if inexact:
                raise EngineInvariantError(
                    f"inexact notional {price}*{quantity} in {market.symbol}"
                )
            reserve = amount - (-amount * market.taker_fee_ppm // PPM)
            if reserve > INT64_MAX:
                return RejectReason.AMOUNT_OUT_OF_RANGE, 0, 0
            cell = (
                self._balances.get((account_id, market.quote_asset)) if cells is None else cells[1]
            )
        else:
            reserve = quantity
            cell = (
                self._balances.get((account_id, market.base_asset)) if cells is None else cells[0]
            )
        if tif is TimeInForce.FOK:
            reason = self._fok_reason(market, command, limit_key)
            if reason is not None:
                return reason, 0, 0
        if reserve > (0 if cell is None else cell.available):
            return RejectReason.INSUFFICIENT_BALANCE, 0, 0
        return None, reserve, limit_key

    def _fok_reason(
        self, market: Market, command: PlaceOrder, limit_key: int
    ) -> RejectReason | None:
        """FOK_UNFILLABLE unless matching could fill the whole quantity right now."""
        fillable, _ = self._walk_fillable(
            market,
            side=command.side,
            account_id=command.account_id,
            self_trade_prevention=command.self_trade_prevention,
            limit_key=limit_key,
            quantity=command.quantity,
        )
        return RejectReason.FOK_UNFILLABLE if fillable < command.quantity else None

    def _place(self, command: PlaceOrder) -> ApplyResult:  # noqa: PLR0912  (guards)
        account_id = command.account_id
        client_order_id = command.client_order_id
        market = self._markets.get(command.symbol)
        if client_order_id:
            record = self._order_requests.get(account_id, client_order_id)
            live = self._live_client_order_ids.get(account_id)
            if record is not None and record[0] == command:
                return _new_result(record[1], (), _DUPLICATE)
            if record is not None or (live is not None and client_order_id in live):
                return self._reject_order(
                    market=market,
                    account_id=account_id,
                    client_order_id=client_order_id,
                    order_id=0,
                    reason=RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                    is_place=True,
                )
        if market is None:
            reason: RejectReason | None = RejectReason.SYMBOL_UNKNOWN
        else:
            reserve = limit_key = 0
            if market.mode is not _NORMAL:
                if market.mode is MarketMode.HALTED:
                    reason = RejectReason.MARKET_HALTED
                else:
                    reason = RejectReason.MARKET_CANCEL_ONLY
            elif command.order_type is _LIMIT:
                reason, reserve, limit_key = self._check_limit_place(market, command)
            else:
                reason = self._check_market_place(market, command)
                if reason is None:
                    reason, reserve, limit_key = self._check_market_place_dynamic(market, command)
            if reason is None:
                result = self._execute_place(market, command, reserve, limit_key)
        if reason is not None:
            result = self._reject_order(
                market=market,
                account_id=account_id,
                client_order_id=client_order_id,
                order_id=0,
                reason=reason,
                is_place=True,
            )
        if client_order_id:
            self._order_requests.put(account_id, client_order_id, (command, result.outcome))
        return result

    def _check_market_place_dynamic(
        self, market: Market, command: PlaceOrder
    ) -> tuple[RejectReason | None, int, int]:
        """Checks of a MARKET order against the book and balances: (reason, reserve, key)."""
        side = command.side
        is_buy = side is _BUY
        account_id = command.account_id
        book = market.book
        opposite = book.asks if is_buy else book.bids
        if not opposite.keys:
            return RejectReason.NO_LIQUIDITY, 0, 0
        if is_buy:
            limit_key = -band_price_max(market.reference_price, market.band_bps)
            if command.quote_quantity:
                budget = command.quote_quantity
                reserve = budget + fee_for(budget, market.taker_fee_ppm)
            else:
                _, amount = self._walk_fillable(
                    market,
                    side=side,
                    account_id=account_id,
                    self_trade_prevention=command.self_trade_prevention,
                    limit_key=limit_key,
                    quantity=command.quantity,
                )
                reserve = amount + fee_for(amount, market.taker_fee_ppm)
                if reserve > INT64_MAX:
                    return RejectReason.AMOUNT_OUT_OF_RANGE, 0, 0
        else:
            limit_key = band_price_min(market.reference_price, market.band_bps)
            reserve = command.quantity
        if command.time_in_force is TimeInForce.FOK:
            reason = self._fok_reason(market, command, limit_key)
            if reason is not None:
                return reason, 0, 0
        reserve_asset = market.quote_asset if is_buy else market.base_asset
        cell = self._balances.get((account_id, reserve_asset))
        if reserve > (0 if cell is None else cell.available):
            return RejectReason.INSUFFICIENT_BALANCE, 0, 0
        return None, reserve, limit_key

    def _execute_place(
        self, market: Market, command: PlaceOrder, reserve: int, limit_key: int
    ) -> ApplyResult:
        account_id = command.account_id
        side = command.side
        is_buy = side is _BUY
        cells = market.cells.get(account_id)
        if cells is None:
            cells = market.cells[account_id] = (
                self._balance_cell(account_id, market.base_asset),
                self._balance_cell(account_id, market.quote_asset),
            )
        base_cell, quote_cell = cells
        engine_seq = self._command_seq
        timestamp_ns = self._command_ns
        symbol = market.symbol
        order = Order(
            engine_seq,
            account_id,
            symbol,
            command.client_order_id,
            side,
            command.order_type,
            command.time_in_force,
            command.post_only,
            command.self_trade_prevention,
            command.price,
            command.quantity,
            command.quote_quantity,
            quote_cell if is_buy else base_cell,
            base_cell if is_buy else quote_cell,
        )
        events = self._events
        market.stream_seq += 1
        events.append(
            _new_order_accepted(
                symbol,
                market.stream_seq,
                engine_seq,
                timestamp_ns,
                engine_seq,
                account_id,
                command.client_order_id,
                side,
                command.order_type,
                command.time_in_force,
                command.post_only,
                command.self_trade_prevention,
                command.price,
                command.quantity,
                command.quote_quantity,
            )
        )
        if reserve:  # self._reserve, inlined
            cell = order.reserve_balance
            if reserve > cell.available:
                msg = f"reservation of {reserve} exceeds {cell!r}"
                raise EngineInvariantError(msg)
            cell.available -= reserve
            cell.held += reserve
            order.reserved_amount = reserve
            market.stream_seq += 1
            events.append(
                _new_funds_reserved(
                    symbol,
                    market.stream_seq,
                    engine_seq,
                    timestamp_ns,
                    account_id,
                    cell.asset,
                    reserve,
                    engine_seq,
                )
            )
        opposite_keys = market.book.asks.keys if is_buy else market.book.bids.keys
        if opposite_keys and opposite_keys[-1] >= limit_key:
            stop, _ = self._match(market, order, limit_key, command.quote_quantity)
        else:
            stop = _STOP_LIMIT if opposite_keys else _STOP_EMPTY
        if stop >= _STOP_LIMIT and order.time_in_force is _GTC and order.order_type is _LIMIT:
            if order.quantity_filled:
                order.status = _PARTIALLY_FILLED
            self._rest(market, order)
        else:
            self._finish_taker(market, order, stop)
        outcome = _new_outcome(engine_seq, None, engine_seq, order.status, order.quantity_filled)
        return _new_result(outcome, tuple(events), _NOT_DUPLICATE)

    def _finish_taker(
        self,
        market: Market,
        order: Order,
        stop: int,
    ) -> None:
        """After matching: rest, fill, expire or cancel what is left of the taker."""
        if stop == _STOP_COMPLETE and (order.quote_quantity == 0 or order.quantity_filled > 0):
            self._close(market, order, _FILLED)
            return
        if stop == _STOP_SELF_TRADE:
            market.stream_seq += 1
            self._events.append(
                _new_order_cancelled(
                    market.symbol,
                    market.stream_seq,
                    self._command_seq,
                    self._command_ns,
                    order.order_id,
                    order.account_id,
                    CancelReason.SELF_TRADE_PREVENTION,
                    order.quantity_remaining,
                )
            )
            self._close(market, order, OrderStatus.CANCELLED)
            return
        if order.order_type is OrderType.LIMIT:
            if order.time_in_force is TimeInForce.GTC:
                if order.quantity_filled:
                    order.status = _PARTIALLY_FILLED
                self._rest(market, order)
                return
            if order.time_in_force is TimeInForce.FOK:
                msg = f"fill-or-kill order {order!r} left a remainder"
                raise EngineInvariantError(msg)
            reason = CancelReason.IMMEDIATE_OR_CANCEL
        elif stop == _STOP_LIMIT:
            reason = CancelReason.PRICE_BAND
        else:
            reason = CancelReason.MARKET_ORDER_REMAINDER
        market.stream_seq += 1
        self._events.append(
            _new_order_expired(
                market.symbol,
                market.stream_seq,
                self._command_seq,
                self._command_ns,
                order.order_id,
                order.account_id,
                reason,
                order.quantity_remaining,
            )
        )
        self._close(market, order, OrderStatus.EXPIRED)

    # ------------------------------------------------------------------ cancel / amend

    def _find_own_order(
        self, account_id: str, order_id: int, client_order_id: str
    ) -> tuple[Order | None, RejectReason, int]:
        """(order, reason if not found, target order id for the rejection event)."""
        if order_id:
            order = self._orders.get(order_id)
            if order is not None and order.account_id == account_id:
                return order, RejectReason.ORDER_NOT_FOUND, order_id
            if self._closed_orders.get(account_id, order_id) is not None:
                return None, RejectReason.ORDER_NOT_OPEN, order_id
            return None, RejectReason.ORDER_NOT_FOUND, order_id
        if client_order_id:
            live_id = self._live_client_order_ids.get(account_id, {}).get(client_order_id)
            if live_id is not None:
                return self._orders[live_id], RejectReason.ORDER_NOT_FOUND, live_id
            record = self._order_requests.get(account_id, client_order_id)
            if record is not None and record[1].accepted:
                return None, RejectReason.ORDER_NOT_OPEN, record[1].order_id
        return None, RejectReason.ORDER_NOT_FOUND, 0

    def _cancel(self, command: CancelOrder) -> ApplyResult:
        order, reason, order_id = self._find_own_order(
            command.account_id, command.order_id, command.client_order_id
        )
        market = None if order is None else self._markets[order.symbol]
        if order is None or market is None:
            return self._reject_order(
                market=None,
                account_id=command.account_id,
                client_order_id=command.client_order_id,
                order_id=order_id,
                reason=reason,
            )
        if market.mode is MarketMode.HALTED:
            return self._reject_order(
                market=market,
                account_id=command.account_id,
                client_order_id=command.client_order_id,
                order_id=order_id,
                reason=RejectReason.MARKET_HALTED,
            )
        self._cancel_resting(market, order, CancelReason.USER_REQUESTED)
        return self._order_result(order_id, order)

    def _cancel_all(self, command: CancelAllOrders) -> ApplyResult:
        symbol = command.symbol
        if symbol:
            market = self._markets.get(symbol)
            reason = None
            if market is None:
                reason = RejectReason.SYMBOL_UNKNOWN
            elif market.mode is MarketMode.HALTED:
                reason = RejectReason.MARKET_HALTED
            if reason is not None:
                return self._reject_order(
                    market=market,
                    account_id=command.account_id,
                    client_order_id="",
                    order_id=0,
                    reason=reason,
                )
        open_orders = self._open_orders.get(command.account_id, {})
        targets = [
            open_orders[order_id]
            for order_id in sorted(open_orders)
            if (not symbol or open_orders[order_id].symbol == symbol)
            and self._markets[open_orders[order_id].symbol].mode is not MarketMode.HALTED
        ]
        for order in targets:
            self._cancel_resting(
                self._markets[order.symbol],
                order,
                CancelReason.CANCEL_ALL,
            )
        cancelled_order_ids = tuple(order.order_id for order in targets)
        outcome = _new_outcome(self._command_seq, None, 0, None, 0, cancelled_order_ids)
        return _new_result(outcome, tuple(self._events), _NOT_DUPLICATE)

    def _amend(self, command: AmendOrder) -> ApplyResult:  # noqa: PLR0911, PLR0912  (guards)
        account_id = command.account_id
        order, reason, order_id = self._find_own_order(
            account_id, command.order_id, command.client_order_id
        )
        market = None if order is None else self._markets[order.symbol]

        def reject(market: Market | None, reason: RejectReason) -> ApplyResult:
            return self._reject_order(
                market=market,
                account_id=account_id,
                client_order_id=command.client_order_id,
                order_id=order_id,
                reason=reason,
            )

        if order is None or market is None:
            return reject(None, reason)
        if market.mode is MarketMode.HALTED:
            return reject(market, RejectReason.MARKET_HALTED)
        if market.mode is MarketMode.CANCEL_ONLY:
            return reject(market, RejectReason.MARKET_CANCEL_ONLY)
        price = command.price or order.price  # 0 keeps the current one
        quantity = command.quantity or order.quantity
        # A quantity decrease at the same price is not re-checked against the (moving) band.
        price_reason = self._check_limit_price(
            market, price, quantity, check_band=price != order.price
        )
        if price_reason is not None:
            return reject(market, price_reason)
        if quantity <= order.quantity_filled:
            return reject(market, RejectReason.AMEND_INVALID)
        is_buy = order.side is _BUY
        remaining = quantity - order.quantity_filled
        if is_buy:
            needed = self._buy_reserve_needed(market, order, price, remaining)
            if needed > INT64_MAX:
                return reject(market, RejectReason.AMOUNT_OUT_OF_RANGE)
        else:
            needed = remaining
        if price == order.price and quantity <= order.quantity:
            self._amend_in_place(market, order, quantity, needed)
            outcome = _new_outcome(
                self._command_seq, None, order_id, order.status, order.quantity_filled, (), _KEPT
            )
            return _new_result(outcome, tuple(self._events), _NOT_DUPLICATE)
        opposite = market.book.asks if is_buy else market.book.bids
        limit_key = -price if is_buy else price
        if order.post_only and opposite.keys and opposite.keys[-1] >= limit_key:
            return reject(market, RejectReason.POST_ONLY_WOULD_TAKE)
        delta = needed - order.reserved_amount
        if delta > order.reserve_balance.available:
            return reject(market, RejectReason.INSUFFICIENT_BALANCE)
        own_side = market.book.bids if is_buy else market.book.asks
        own_side.remove(order)
        requeued = order.requeued(price=price, quantity=quantity)
        self._orders[order_id] = requeued
        self._open_orders[account_id][order_id] = requeued
        self._events.append(
            OrderAmended(
                symbol=market.symbol,
                seq=market.next_seq(),
                engine_seq=self._command_seq,
                timestamp_ns=self._command_ns,
                order_id=order_id,
                account_id=account_id,
                price=price,
                quantity=quantity,
                quantity_remaining=remaining,
                priority_kept=False,
            )
        )
        if delta > 0:
            self._reserve(market, requeued, delta)
        elif delta < 0:
            self._release(market, requeued, -delta)
        stop, _ = self._match(market, requeued, limit_key, 0)
        if stop in (_STOP_LIMIT, _STOP_EMPTY):
            if requeued.quantity_filled:
                requeued.status = _PARTIALLY_FILLED
            side = market.book.bids if is_buy else market.book.asks
            side.add(requeued)
            if market.book.is_crossed():
                raise EngineInvariantError(f"book {market.symbol} crossed after amend")
        else:
            self._finish_taker(market, requeued, stop)
        return self._order_result(order_id, requeued)

    def _amend_in_place(
        self,
        market: Market,
        order: Order,
        quantity: int,
        needed: int,
    ) -> None:
        """Quantity down (or unchanged) at the same price: keeps time priority."""
        level = market.book.side(order.side).levels[order.price]
        remaining = quantity - order.quantity_filled
        level.quantity -= order.quantity_remaining - remaining
        order.quantity = quantity
        order.quantity_remaining = remaining
        self._events.append(
            OrderAmended(
                symbol=market.symbol,
                seq=market.next_seq(),
                engine_seq=self._command_seq,
                timestamp_ns=self._command_ns,
                order_id=order.order_id,
                account_id=order.account_id,
                price=order.price,
                quantity=quantity,
                quantity_remaining=remaining,
                priority_kept=True,
            )
        )
        excess = order.reserved_amount - needed
        if excess < 0:
            raise EngineInvariantError(f"reservation of {order!r} below its need {needed}")
        if excess:
            self._release(market, order, excess)

    # ------------------------------------------------------------------ reference data

    def _create_asset(self, command: CreateAsset) -> ApplyResult:
        if command.asset in self._asset_scales:
            reason: RejectReason | None = RejectReason.ASSET_ALREADY_EXISTS
        else:
            reason = validate_asset(command.asset, command.scale)
        if reason is not None:
            return ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason), ())
        self._asset_scales[command.asset] = command.scale
        self._asset_supply[command.asset] = 0
        event = AssetCreated(
            symbol="",
            seq=self._next_account_seq(),
            engine_seq=self._command_seq,
            timestamp_ns=self._command_ns,
            asset=command.asset,
            scale=command.scale,
        )
        return self._result(Outcome(engine_seq=self._command_seq), event)

    def _create_market(self, command: CreateMarket) -> ApplyResult:
        spec = command.spec
        if spec.symbol in self._markets:
            reason: RejectReason | None = RejectReason.MARKET_ALREADY_EXISTS
        else:
            reason = validate_market_spec(spec, self._asset_scales)
        if reason is not None:
            return ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason), ())
        market = self._markets[spec.symbol] = Market(spec)
        event = MarketCreated(
            symbol=spec.symbol,
            seq=market.next_seq(),
            engine_seq=self._command_seq,
            timestamp_ns=self._command_ns,
            spec=spec,
        )
        return self._result(Outcome(engine_seq=self._command_seq), event)

    def _set_market_mode(self, command: SetMarketMode) -> ApplyResult:
        market = self._markets.get(command.symbol)
        if market is None:
            reason = RejectReason.SYMBOL_UNKNOWN
            return ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason), ())
        previous = market.mode
        market.mode = command.mode
        event = MarketModeChanged(
            symbol=market.symbol,
            seq=market.next_seq(),
            engine_seq=self._command_seq,
            timestamp_ns=self._command_ns,
            mode=command.mode,
            previous_mode=previous,
        )
        return self._result(Outcome(engine_seq=self._command_seq), event)

    # ------------------------------------------------------------------ funding

    def _funding(
        self,
        command: FundingCommand,
        validate: Callable[[], RejectReason | None],
        execute: Callable[[int], Event],
    ) -> ApplyResult:
        """Idempotency by (account, transfer_id) around one funding command."""
        transfer_id = command.transfer_id
        account_id = command.account_id
        if transfer_id:
            record = self._transfer_requests.get(account_id, transfer_id)
            if record is not None:
                if record[0] == command:
                    return ApplyResult(record[1], (), duplicate=True)
                reason = RejectReason.IDEMPOTENCY_KEY_REUSED
                return ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason), ())
        reason_or_none = None
        if command.asset not in self._asset_scales:
            reason_or_none = RejectReason.ASSET_UNKNOWN
        else:
            reason_or_none = validate()
        if reason_or_none is not None:
            result = ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason_or_none), ())
        else:
            event = execute(self._next_account_seq())
            result = self._result(Outcome(engine_seq=self._command_seq), event)
        if transfer_id:
            self._transfer_requests.put(account_id, transfer_id, (command, result.outcome))
        return result

    def _supply_change_reason(self, asset: str, delta: int) -> RejectReason | None:
        if delta == 0 or abs(delta) > INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        if self._asset_supply[asset] + delta > INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        return None

    def _move_supply(self, account_id: str, asset: str, delta: int) -> None:
        cell = self._balance_cell(account_id, asset)
        cell.available += delta
        self._asset_supply[asset] += delta
        if cell.available < 0 or self._asset_supply[asset] < 0:
            raise EngineInvariantError(f"funding made a balance negative: {cell!r}")

    def _deposit(self, command: Deposit) -> ApplyResult:
        def validate() -> RejectReason | None:
            if command.amount <= 0:
                return RejectReason.AMOUNT_OUT_OF_RANGE
            return self._supply_change_reason(command.asset, command.amount)

        def execute(seq: int) -> Event:
            self._move_supply(command.account_id, command.asset, command.amount)
            return FundsDeposited(
                symbol="",
                seq=seq,
                engine_seq=self._command_seq,
                timestamp_ns=self._command_ns,
                account_id=command.account_id,
                asset=command.asset,
                amount=command.amount,
                transfer_id=command.transfer_id,
            )

        return self._funding(command, validate, execute)

    def _withdraw(self, command: Withdraw) -> ApplyResult:
        def validate() -> RejectReason | None:
            if not 0 < command.amount <= INT64_MAX:
                return RejectReason.AMOUNT_OUT_OF_RANGE
            cell = self._balances.get((command.account_id, command.asset))
            if cell is None or cell.available < command.amount:
                return RejectReason.INSUFFICIENT_BALANCE
            return None

        def execute(seq: int) -> Event:
            self._move_supply(command.account_id, command.asset, -command.amount)
            return FundsWithdrawn(
                symbol="",
                seq=seq,
                engine_seq=self._command_seq,
                timestamp_ns=self._command_ns,
                account_id=command.account_id,
                asset=command.asset,
                amount=command.amount,
                transfer_id=command.transfer_id,
            )

        return self._funding(command, validate, execute)

    def _adjust(self, command: AdjustBalance) -> ApplyResult:
        def validate() -> RejectReason | None:
            reason = self._supply_change_reason(command.asset, command.delta)
            if reason is not None:
                return reason
            cell = self._balances.get((command.account_id, command.asset))
            available = 0 if cell is None else cell.available
            if available + command.delta < 0:
                return RejectReason.INSUFFICIENT_BALANCE
            return None

        def execute(seq: int) -> Event:
            self._move_supply(command.account_id, command.asset, command.delta)
            return BalanceAdjusted(
                symbol="",
                seq=seq,
                engine_seq=self._command_seq,
                timestamp_ns=self._command_ns,
                account_id=command.account_id,
                asset=command.asset,
                delta=command.delta,
                transfer_id=command.transfer_id,
                memo=command.memo,
            )

        return self._funding(command, validate, execute)

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:  # noqa: PLR0912  (one check per invariant)
        """Full O(state) check of the module invariants; raises EngineInvariantError."""
        held_expected: dict[tuple[str, str], int] = {}
        for market in self._markets.values():
            market.book.check_invariants()
            in_book = {
                order.order_id
                for side in (market.book.bids, market.book.asks)
                for order in side.orders_in_priority()
            }
            for order_id in in_book:
                order = self._orders.get(order_id)
                if order is None or not order.resting or order.symbol != market.symbol:
                    raise EngineInvariantError(f"book {market.symbol} holds unknown {order_id}")
        for order_id, order in self._orders.items():
            if not order.resting or order.order_id != order_id:
                raise EngineInvariantError(f"open order {order!r} is not resting")
            if self._open_orders.get(order.account_id, {}).get(order_id) is not order:
                raise EngineInvariantError(f"open order {order!r} missing from its account")
            if order.quantity_filled + order.quantity_remaining != order.quantity:
                raise EngineInvariantError(f"order {order!r} quantities disagree")
            if order.reserved_amount < 0:
                raise EngineInvariantError(f"order {order!r} reservation negative")
            cell = order.reserve_balance
            if self._balances.get((order.account_id, cell.asset)) is not cell:
                raise EngineInvariantError(f"order {order!r} reserves a foreign balance")
            market = self._markets[order.symbol]
            if order.side is _BUY:
                needed = self._buy_reserve_needed(
                    market, order, order.price, order.quantity_remaining
                )
                if order.reserved_amount < needed:
                    raise EngineInvariantError(f"order {order!r} under-reserved ({needed})")
            elif order.reserved_amount != order.quantity_remaining:
                raise EngineInvariantError(f"sell order {order!r} reservation mismatch")
            key = (order.account_id, cell.asset)
            held_expected[key] = held_expected.get(key, 0) + order.reserved_amount
        if sum(len(orders) for orders in self._open_orders.values()) != len(self._orders):
            raise EngineInvariantError("open-order index size mismatch")
        totals: dict[str, int] = {}
        for key, cell in self._balances.items():
            if cell.available < 0 or cell.held < 0:
                raise EngineInvariantError(f"negative balance {cell!r}")
            if cell.held != held_expected.get(key, 0):
                msg = f"held {cell.held} != open-order exposure {held_expected.get(key, 0)}"
                raise EngineInvariantError(f"{msg} for {key}")
            totals[cell.asset] = totals.get(cell.asset, 0) + cell.available + cell.held
        for asset, supply in self._asset_supply.items():
            if totals.get(asset, 0) != supply:
                raise EngineInvariantError(f"asset {asset} total {totals.get(asset)} != {supply}")

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> bytes:
        """Canonical bytes of the whole state (see snapshot.py)."""
        return self.capture_snapshot().serialize()

    def capture_snapshot(self) -> SnapshotCapture:
        """A consistent copy of the state, cheap to take (no encoding). Its `serialize()`
        returns the bytes `snapshot()` returns now, and is safe to call in another thread
        while this engine goes on applying commands."""
        from core.engine.snapshot import capture_engine  # noqa: PLC0415  (import cycle)

        return capture_engine(self)

    @classmethod
    def from_snapshot(cls, data: bytes) -> Engine:
        from core.engine.snapshot import decode_engine  # noqa: PLC0415  (import cycle)

        return decode_engine(data)

    def state_hash(self) -> str:
        """sha256 hex of `snapshot()`."""
        return hashlib.sha256(self.snapshot()).hexdigest()
