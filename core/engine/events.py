"""Events: everything the engine decided, in order.

Every event carries `symbol` ('' for account-level events), `seq` (its position in its
stream), `engine_seq` (the command that caused it) and `timestamp_ns` (that command's time).

Streams and numbering:
- each market has its own stream (1, 2, 3 ... without gaps): MarketCreated,
  MarketModeChanged, every order event, trade and fund reservation of that market;
- one account-level stream (symbol '') holds AssetCreated, FundsDeposited, FundsWithdrawn,
  BalanceAdjusted and OrderRejected for commands naming an unknown market.
The counters are part of the engine state (snapshot), so a replay numbers identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.engine.enums import (
    CancelReason,
    MarketMode,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.market import MarketSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetCreated:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    asset: str
    scale: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketCreated:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    spec: MarketSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketModeChanged:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    mode: MarketMode
    previous_mode: MarketMode


@dataclass(frozen=True, slots=True, kw_only=True)
class FundsDeposited:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    account_id: str
    asset: str
    amount: int
    transfer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FundsWithdrawn:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    account_id: str
    asset: str
    amount: int
    transfer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceAdjusted:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    account_id: str
    asset: str
    delta: int
    transfer_id: str
    memo: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    order_id: int
    account_id: str
    client_order_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    price: int
    quantity: int
    quote_quantity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected:
    """A place, cancel, amend or cancel-all was refused; `order_id` is the target or 0."""

    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    account_id: str
    client_order_id: str
    order_id: int
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAmended:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    order_id: int
    account_id: str
    price: int
    quantity: int
    quantity_remaining: int
    priority_kept: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    order_id: int
    account_id: str
    reason: CancelReason
    quantity_cancelled: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    order_id: int
    account_id: str
    reason: CancelReason
    quantity_expired: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeExecuted:
    """One fill. `quote_amount` is the exact notional; fees are quote-asset amounts.

    The remaining quantities are after this fill; a taker spending a quote budget reports 0.
    """

    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    trade_id: int
    maker_order_id: int
    taker_order_id: int
    maker_account_id: str
    taker_account_id: str
    taker_side: Side
    price: int
    quantity: int
    quote_amount: int
    maker_fee: int
    taker_fee: int
    maker_quantity_remaining: int
    taker_quantity_remaining: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FundsReserved:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    account_id: str
    asset: str
    amount: int
    order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FundsReleased:
    symbol: str
    seq: int
    engine_seq: int
    timestamp_ns: int
    account_id: str
    asset: str
    amount: int
    order_id: int


Event = (
    AssetCreated
    | MarketCreated
    | MarketModeChanged
    | FundsDeposited
    | FundsWithdrawn
    | BalanceAdjusted
    | OrderAccepted
    | OrderRejected
    | OrderAmended
    | OrderCancelled
    | OrderExpired
    | TradeExecuted
    | FundsReserved
    | FundsReleased
)
