"""The matching + risk engine: a pure, deterministic state machine.

`Engine.apply(command, engine_seq=..., timestamp_ns=...)` is the only way state changes. The
engine reads no clock, no randomness and does no I/O: time and sequence numbers come in with
the command, order ids are the engine_seq of the placing command, trade ids come from a
counter in the state. The same commands with the same engine_seq / timestamp_ns always
produce the same events, outcomes and state hash.

Invariants: the numbered list of core/engine/README.md is their source. The book keeps 1-3
(book.py); this module keeps 4-9 and checks all of them in `check_invariants` (O(state)),
besides cheap runtime checks that raise EngineInvariantError on the hot path; the property
tests check them after random commands.

Layout: this module is the dispatch (`apply`, the idempotency wrappers) and the state (the
markets, balances, order indexes, idempotency tables and counters) with the bookkeeping
around them (reserve, release, rest, close, cancel). The rest is in its own module:
checks.py (whether a place or amend is acceptable), matching.py (a taker against the book),
fees.py (every fee), funding.py (deposits, withdrawals, adjustments), book.py (the book).

Business rejections are returned (`Outcome.reason`, plus an OrderRejected event for order
commands); they never raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from core.engine.balances import FEE_ACCOUNT_ID, Balance
from core.engine.book import Order
from core.engine.checks import (
    check_limit_place,
    check_market_place,
    check_market_place_dynamic,
    check_price_quantity_band_notional,
)
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
    Side,
    TimeInForce,
)
from core.engine.errors import EngineInvariantError
from core.engine.events import (
    AssetCreated,
    Event,
    FundsReleased,
    FundsReserved,
    MarketCreated,
    MarketModeChanged,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
)
from core.engine.fast_frozen import positional_constructor
from core.engine.fees import buy_reserve_needed
from core.engine.funding import funding_event, funding_reason, move_supply, supply_delta
from core.engine.idempotency import PerAccountFifo
from core.engine.market import validate_asset, validate_market_spec
from core.engine.market_state import Market
from core.engine.matching import STOP_COMPLETE, STOP_EMPTY, STOP_LIMIT, STOP_SELF_TRADE, match
from core.engine.money import INT64_MAX
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

_BUY: Final = Side.BUY
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


# A client order id's first placement and its outcome (not the service's OrderRecord, an
# order's view for queries in core/contracts/orders.py).
PlacementRecord = tuple[PlaceOrder, Outcome]
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
        self._order_requests: PerAccountFifo[str, PlacementRecord] = PerAccountFifo(
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
            Deposit: self._funding,
            Withdraw: self._funding,
            AdjustBalance: self._funding,
            CreateAsset: self._create_asset,
            CreateMarket: self._create_market,
            SetMarketMode: self._keyed(self._set_market_mode),
        }

    # ------------------------------------------------------------------ entry point

    def apply(self, command: Command, *, engine_seq: int, timestamp_ns: int) -> ApplyResult:
        """Apply one command. Rejections are returned; an invariant breach raises."""
        if engine_seq <= self._engine_seq_last:  # invariant 8
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
        """`handler` with idempotency (invariant 9) by (caller, request_id): a command with a
        key seen before returns the stored outcome if it is equal (nothing applied, no
        events), else IDEMPOTENCY_KEY_REUSED (not stored); a new key stores its outcome,
        rejections too.
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
            self._command_seq, None, order_id, order.status, order.filled_quantity, ()
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
        market.book.rest(order)
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

    def _match(self, market: Market, taker: Order, limit_key: int, budget: int) -> int:
        """Match the taker (matching.py) with this engine's state; returns why it stopped."""
        stop, self._trade_id_last = match(
            market,
            taker,
            limit_key,
            budget,
            fee_cell=self._balance_cell(FEE_ACCOUNT_ID, market.quote_asset),
            trade_id_last=self._trade_id_last,
            events=self._events,
            engine_seq=self._command_seq,
            timestamp_ns=self._command_ns,
            close=self._close,
        )
        return stop

    # ------------------------------------------------------------------ place

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
                reason, reserve, limit_key = check_limit_place(
                    market,
                    command,
                    self._open_orders,
                    self.config.open_orders_max_per_account,
                    self._balances,
                )
            else:
                reason = check_market_place(market, command)
                if reason is None:
                    reason, reserve, limit_key = check_market_place_dynamic(
                        market, command, self._balances
                    )
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
        best_key = (market.book.asks if is_buy else market.book.bids).best_key()
        if best_key is not None and best_key >= limit_key:
            stop = self._match(market, order, limit_key, command.quote_quantity)
        else:
            stop = STOP_EMPTY if best_key is None else STOP_LIMIT
        if stop >= STOP_LIMIT and order.time_in_force is _GTC and order.order_type is _LIMIT:
            if order.filled_quantity:
                order.status = _PARTIALLY_FILLED
            self._rest(market, order)
        else:
            self._finish_taker(market, order, stop)
        outcome = _new_outcome(engine_seq, None, engine_seq, order.status, order.filled_quantity)
        return _new_result(outcome, tuple(events), _NOT_DUPLICATE)

    def _finish_taker(
        self,
        market: Market,
        order: Order,
        stop: int,
    ) -> None:
        """After matching, a taker that does not rest: fill, expire or cancel what is left."""
        if stop == STOP_COMPLETE and (order.quote_quantity == 0 or order.filled_quantity > 0):
            self._close(market, order, _FILLED)
            return
        if stop == STOP_SELF_TRADE:
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
            # A GTC limit order's remainder rests (the callers), a FOK one cannot remain.
            if order.time_in_force is not TimeInForce.IOC:
                msg = f"{order.time_in_force} order {order!r} left a remainder to expire"
                raise EngineInvariantError(msg)
            reason = CancelReason.IMMEDIATE_OR_CANCEL
        elif stop == STOP_LIMIT:
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
        price_reason = check_price_quantity_band_notional(
            market, price, quantity, check_band=price != order.price
        )
        if price_reason is not None:
            return reject(market, price_reason)
        if quantity <= order.filled_quantity:
            return reject(market, RejectReason.AMEND_INVALID)
        is_buy = order.side is _BUY
        remaining = quantity - order.filled_quantity
        if is_buy:
            needed = buy_reserve_needed(
                order, price, remaining, market.base_unit, market.taker_fee_ppm
            )
            if needed > INT64_MAX:
                return reject(market, RejectReason.AMOUNT_OUT_OF_RANGE)
        else:
            needed = remaining
        if price == order.price and quantity <= order.quantity:
            self._amend_in_place(market, order, quantity, needed)
            outcome = _new_outcome(
                self._command_seq, None, order_id, order.status, order.filled_quantity, (), _KEPT
            )
            return _new_result(outcome, tuple(self._events), _NOT_DUPLICATE)
        opposite = market.book.asks if is_buy else market.book.bids
        limit_key = -price if is_buy else price
        if order.post_only and opposite.reaches(limit_key):
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
        stop = self._match(market, requeued, limit_key, 0)
        if stop in (STOP_LIMIT, STOP_EMPTY):
            if requeued.filled_quantity:
                requeued.status = _PARTIALLY_FILLED
            market.book.rest(requeued)
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
        remaining = quantity - order.filled_quantity
        market.book.side(order.side).reduce(order, remaining)
        order.quantity = quantity
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

    def _funding(self, command: FundingCommand) -> ApplyResult:
        """Deposit, Withdraw, AdjustBalance (funding.py's rules), idempotent (invariant 9) by
        (account, transfer_id): an equal retry returns the stored outcome, another command under the
        key is IDEMPOTENCY_KEY_REUSED (not stored)."""
        transfer_id = command.transfer_id
        account_id = command.account_id
        if transfer_id:
            record = self._transfer_requests.get(account_id, transfer_id)
            if record is not None:
                if record[0] == command:
                    return ApplyResult(record[1], (), duplicate=True)
                reason = RejectReason.IDEMPOTENCY_KEY_REUSED
                return ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason), ())
        reason_or_none = funding_reason(command, self._asset_supply, self._balances)
        if reason_or_none is not None:
            result = ApplyResult(Outcome(engine_seq=self._command_seq, reason=reason_or_none), ())
        else:
            seq = self._next_account_seq()
            cell = self._balance_cell(account_id, command.asset)
            move_supply(cell, self._asset_supply, supply_delta(command))
            event = funding_event(command, seq, self._command_seq, self._command_ns)
            result = self._result(Outcome(engine_seq=self._command_seq), event)
        if transfer_id:
            self._transfer_requests.put(account_id, transfer_id, (command, result.outcome))
        return result

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:  # noqa: PLR0912  (one check per invariant)
        """Full O(state) check of invariants 1-6 (core/engine/README.md); raises
        EngineInvariantError. 7-9 hold per command (checked where they are kept)."""
        held_expected: dict[tuple[str, str], int] = {}
        for market in self._markets.values():
            market.book.check_invariants()  # invariants 1-3
            # Invariant 2: the book holds exactly the engine's open orders.
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
            if order.filled_quantity + order.quantity_remaining != order.quantity:
                raise EngineInvariantError(f"order {order!r} quantities disagree")
            if order.reserved_amount < 0:  # invariant 6 from here to the next loop
                raise EngineInvariantError(f"order {order!r} reservation negative")
            cell = order.reserve_balance
            if self._balances.get((order.account_id, cell.asset)) is not cell:
                raise EngineInvariantError(f"order {order!r} reserves a foreign balance")
            market = self._markets[order.symbol]
            if order.side is _BUY:
                needed = buy_reserve_needed(
                    order,
                    order.price,
                    order.quantity_remaining,
                    market.base_unit,
                    market.taker_fee_ppm,
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
        for key, cell in self._balances.items():  # invariant 4
            if cell.available < 0 or cell.held < 0:
                raise EngineInvariantError(f"negative balance {cell!r}")
            if cell.held != held_expected.get(key, 0):
                msg = f"held {cell.held} != open-order exposure {held_expected.get(key, 0)}"
                raise EngineInvariantError(f"{msg} for {key}")
            totals[cell.asset] = totals.get(cell.asset, 0) + cell.available + cell.held
        for asset, supply in self._asset_supply.items():  # invariant 5
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
