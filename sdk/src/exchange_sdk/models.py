"""The SDK's public types: enums and frozen dataclasses built from the generated messages.

Invariants:
- Every price, quantity, amount and fee is a ``Decimal`` in whole units with exactly the
  asset's scale (``from_minor_units``); the wire's minor units never leak out, except on
  ``raw``, the proto message a value was built from (kept for anything not modelled).
- Conversion into minor units never rounds: ``MarketSpec.price_units`` and friends refuse
  excess precision (PRECISION_EXCEEDED) and off-grid values (PRICE_TICK_VIOLATION,
  QUANTITY_STEP_VIOLATION) before anything is sent.
- Models do no I/O; the clients fetch what a conversion needs (market specs) first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Generic, Self, TypeVar

from exchange.common.v1 import errors_pb2, types_pb2
from exchange.funding.v1 import funding_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange.trading.v1 import trading_pb2
from google.protobuf import timestamp_pb2

from exchange_sdk.errors import (
    ExchangeError,
    PriceTickViolationError,
    QuantityStepViolationError,
    error_reason_name,
    from_command_error,
)
from exchange_sdk.money import DecimalInput, from_minor_units, to_minor_units


class _ProtoEnum(enum.Enum):
    """An enum whose values are the proto enum's numbers and whose names drop its prefix."""

    @classmethod
    def from_proto(cls, number: int) -> Self:
        return cls(number)

    @classmethod
    def parse(cls, text: str) -> Self:
        """By name, case-insensitive, with or without the proto prefix (``buy``, ``SIDE_BUY``)."""
        wanted = text.strip().upper().replace("-", "_")
        for member in cls:
            if wanted in {member.name, f"{_PREFIXES[cls.__name__]}{member.name}"}:
                return member
        choices = ", ".join(member.name.lower() for member in cls if member.value)
        raise ValueError(f"{text!r} is not a {cls.__name__} ({choices})")

    @property
    def label(self) -> str:
        """The lower-case name, as the CLI shows it (``buy``, ``partially_filled``)."""
        return self.name.lower()


_PREFIXES = {
    "Side": "SIDE_",
    "OrderType": "ORDER_TYPE_",
    "TimeInForce": "TIME_IN_FORCE_",
    "SelfTradePrevention": "SELF_TRADE_PREVENTION_",
    "OrderStatus": "ORDER_STATUS_",
    "CancelReason": "CANCEL_REASON_",
    "Liquidity": "LIQUIDITY_",
    "MarketMode": "MARKET_MODE_",
    "CandleInterval": "CANDLE_INTERVAL_",
    "TransferKind": "TRANSFER_KIND_",
    "TransferStatus": "TRANSFER_STATUS_",
}


class Side(_ProtoEnum):
    UNSPECIFIED = types_pb2.SIDE_UNSPECIFIED
    BUY = types_pb2.SIDE_BUY
    SELL = types_pb2.SIDE_SELL


class OrderType(_ProtoEnum):
    UNSPECIFIED = types_pb2.ORDER_TYPE_UNSPECIFIED
    LIMIT = types_pb2.ORDER_TYPE_LIMIT
    MARKET = types_pb2.ORDER_TYPE_MARKET


class TimeInForce(_ProtoEnum):
    UNSPECIFIED = types_pb2.TIME_IN_FORCE_UNSPECIFIED
    GTC = types_pb2.TIME_IN_FORCE_GTC
    IOC = types_pb2.TIME_IN_FORCE_IOC
    FOK = types_pb2.TIME_IN_FORCE_FOK


class SelfTradePrevention(_ProtoEnum):
    UNSPECIFIED = types_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
    CANCEL_NEWEST = types_pb2.SELF_TRADE_PREVENTION_CANCEL_NEWEST
    CANCEL_OLDEST = types_pb2.SELF_TRADE_PREVENTION_CANCEL_OLDEST
    CANCEL_BOTH = types_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH


class OrderStatus(_ProtoEnum):
    UNSPECIFIED = types_pb2.ORDER_STATUS_UNSPECIFIED
    NEW = types_pb2.ORDER_STATUS_NEW
    PARTIALLY_FILLED = types_pb2.ORDER_STATUS_PARTIALLY_FILLED
    FILLED = types_pb2.ORDER_STATUS_FILLED
    CANCELLED = types_pb2.ORDER_STATUS_CANCELLED
    EXPIRED = types_pb2.ORDER_STATUS_EXPIRED
    REJECTED = types_pb2.ORDER_STATUS_REJECTED

    @property
    def is_open(self) -> bool:
        return self in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}


class CancelReason(_ProtoEnum):
    UNSPECIFIED = types_pb2.CANCEL_REASON_UNSPECIFIED
    USER_REQUESTED = types_pb2.CANCEL_REASON_USER_REQUESTED
    CANCEL_ALL = types_pb2.CANCEL_REASON_CANCEL_ALL
    SELF_TRADE_PREVENTION = types_pb2.CANCEL_REASON_SELF_TRADE_PREVENTION
    IMMEDIATE_OR_CANCEL = types_pb2.CANCEL_REASON_IMMEDIATE_OR_CANCEL
    MARKET_ORDER_REMAINDER = types_pb2.CANCEL_REASON_MARKET_ORDER_REMAINDER
    PRICE_BAND = types_pb2.CANCEL_REASON_PRICE_BAND


class Liquidity(_ProtoEnum):
    UNSPECIFIED = types_pb2.LIQUIDITY_UNSPECIFIED
    MAKER = types_pb2.LIQUIDITY_MAKER
    TAKER = types_pb2.LIQUIDITY_TAKER


class MarketMode(_ProtoEnum):
    UNSPECIFIED = types_pb2.MARKET_MODE_UNSPECIFIED
    NORMAL = types_pb2.MARKET_MODE_NORMAL
    CANCEL_ONLY = types_pb2.MARKET_MODE_CANCEL_ONLY
    HALTED = types_pb2.MARKET_MODE_HALTED


class CandleInterval(_ProtoEnum):
    UNSPECIFIED = marketdata_types_pb2.CANDLE_INTERVAL_UNSPECIFIED
    ONE_MINUTE = marketdata_types_pb2.CANDLE_INTERVAL_1M
    FIVE_MINUTES = marketdata_types_pb2.CANDLE_INTERVAL_5M
    ONE_HOUR = marketdata_types_pb2.CANDLE_INTERVAL_1H
    ONE_DAY = marketdata_types_pb2.CANDLE_INTERVAL_1D

    @classmethod
    def from_label(cls, label: str) -> CandleInterval:
        """From the WebSocket channel's label: ``1m``, ``5m``, ``1h`` or ``1d``."""
        return _INTERVAL_OF_LABEL[label]

    @property
    def channel_label(self) -> str:
        """``1m``, ``5m``, ``1h`` or ``1d``."""
        return {value: key for key, value in _INTERVAL_OF_LABEL.items()}[self]


_INTERVAL_OF_LABEL = {
    "1m": CandleInterval.ONE_MINUTE,
    "5m": CandleInterval.FIVE_MINUTES,
    "1h": CandleInterval.ONE_HOUR,
    "1d": CandleInterval.ONE_DAY,
}


class TransferKind(_ProtoEnum):
    UNSPECIFIED = funding_pb2.TRANSFER_KIND_UNSPECIFIED
    DEPOSIT = funding_pb2.TRANSFER_KIND_DEPOSIT
    WITHDRAWAL = funding_pb2.TRANSFER_KIND_WITHDRAWAL
    ADJUSTMENT = funding_pb2.TRANSFER_KIND_ADJUSTMENT


class TransferStatus(_ProtoEnum):
    UNSPECIFIED = funding_pb2.TRANSFER_STATUS_UNSPECIFIED
    COMPLETED = funding_pb2.TRANSFER_STATUS_COMPLETED
    REJECTED = funding_pb2.TRANSFER_STATUS_REJECTED


def timestamp_datetime(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    """A proto Timestamp as an aware UTC datetime; None when unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def _reason_or_none(reason: int) -> str | None:
    return None if reason == errors_pb2.ERROR_REASON_UNSPECIFIED else error_reason_name(reason)


@dataclass(frozen=True)
class Asset:
    asset: str
    scale: int
    display_name: str

    @classmethod
    def from_proto(cls, message: types_pb2.Asset) -> Asset:
        return cls(asset=message.asset, scale=message.scale, display_name=message.display_name)


@dataclass(frozen=True)
class MarketSpec:
    """A market's rules in whole units, and the exact conversions its orders need."""

    symbol: str
    base_asset: str
    quote_asset: str
    base_scale: int
    quote_scale: int
    price_tick: Decimal
    lot_step: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    min_notional: Decimal
    price_band_bps: int
    maker_fee_ppm: int
    taker_fee_ppm: int
    reference_price: Decimal
    mode: MarketMode
    raw: types_pb2.Market = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: types_pb2.Market) -> MarketSpec:
        base, quote = message.base_scale, message.quote_scale
        return cls(
            symbol=message.symbol,
            base_asset=message.base_asset,
            quote_asset=message.quote_asset,
            base_scale=base,
            quote_scale=quote,
            price_tick=from_minor_units(message.price_tick, scale=quote),
            lot_step=from_minor_units(message.lot_step, scale=base),
            min_quantity=from_minor_units(message.min_quantity, scale=base),
            max_quantity=from_minor_units(message.max_quantity, scale=base),
            min_notional=from_minor_units(message.min_notional, scale=quote),
            price_band_bps=message.price_band_bps,
            maker_fee_ppm=message.maker_fee_ppm,
            taker_fee_ppm=message.taker_fee_ppm,
            reference_price=from_minor_units(message.reference_price, scale=quote),
            mode=MarketMode.from_proto(message.mode),
            raw=message,
        )

    # ---- human -> wire (exact, refusing) ----
    def price_units(self, price: DecimalInput) -> int:
        """A price as quote minor units per whole base unit; refuses excess precision and
        prices off the tick grid."""
        units = to_minor_units(price, scale=self.quote_scale)
        if units % self.raw.price_tick:
            raise PriceTickViolationError(
                f"{price} is not a multiple of {self.symbol}'s price tick {self.price_tick}",
                metadata={"symbol": self.symbol, "price_tick": str(self.price_tick)},
            )
        return units

    def quantity_units(self, quantity: DecimalInput) -> int:
        """A base quantity as minor units; refuses excess precision and off-lot quantities."""
        units = to_minor_units(quantity, scale=self.base_scale)
        if units % self.raw.lot_step:
            raise QuantityStepViolationError(
                f"{quantity} is not a multiple of {self.symbol}'s lot step {self.lot_step}",
                metadata={"symbol": self.symbol, "lot_step": str(self.lot_step)},
            )
        return units

    def quote_units(self, amount: DecimalInput) -> int:
        """A quote amount (a market buy's budget) as minor units; refuses excess precision."""
        return to_minor_units(amount, scale=self.quote_scale)

    # ---- wire -> human ----
    def price(self, units: int) -> Decimal:
        return from_minor_units(units, scale=self.quote_scale)

    def quantity(self, units: int) -> Decimal:
        return from_minor_units(units, scale=self.base_scale)

    def quote(self, units: int) -> Decimal:
        return from_minor_units(units, scale=self.quote_scale)


@dataclass(frozen=True)
class Order:
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    # None for market orders.
    price: Decimal | None
    quantity: Decimal
    quote_quantity: Decimal
    post_only: bool
    status: OrderStatus
    filled_quantity: Decimal
    filled_quote_quantity: Decimal
    remaining_quantity: Decimal
    # In the market's quote asset.
    fees_paid: Decimal
    cancel_reason: CancelReason
    # The ErrorInfo-style reason name when status is REJECTED.
    reject_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    engine_seq: int
    raw: trading_pb2.Order = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: trading_pb2.Order, market: MarketSpec) -> Order:
        return cls(
            order_id=message.order_id,
            client_order_id=message.client_order_id,
            symbol=message.symbol,
            side=Side.from_proto(message.side),
            order_type=OrderType.from_proto(message.order_type),
            time_in_force=TimeInForce.from_proto(message.time_in_force),
            price=market.price(message.price) if message.price else None,
            quantity=market.quantity(message.quantity),
            quote_quantity=market.quote(message.quote_quantity),
            post_only=message.post_only,
            status=OrderStatus.from_proto(message.status),
            filled_quantity=market.quantity(message.filled_quantity),
            filled_quote_quantity=market.quote(message.filled_quote_quantity),
            remaining_quantity=market.quantity(message.remaining_quantity),
            fees_paid=market.quote(message.fees_paid),
            cancel_reason=CancelReason.from_proto(message.cancel_reason),
            reject_reason=_reason_or_none(message.reject_reason),
            created_at=timestamp_datetime(message.created_at),
            updated_at=timestamp_datetime(message.updated_at),
            engine_seq=message.engine_seq,
            raw=message,
        )


@dataclass(frozen=True)
class Fill:
    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    liquidity: Liquidity
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    executed_at: datetime | None
    engine_seq: int
    raw: trading_pb2.Fill = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: trading_pb2.Fill, market: MarketSpec) -> Fill:
        # Fees are charged in the quote asset (docs/adr/0002); fee_asset says so.
        fee_scale = market.base_scale if message.fee_asset == market.base_asset else None
        return cls(
            trade_id=message.trade_id,
            order_id=message.order_id,
            client_order_id=message.client_order_id,
            symbol=message.symbol,
            side=Side.from_proto(message.side),
            liquidity=Liquidity.from_proto(message.liquidity),
            price=market.price(message.price),
            quantity=market.quantity(message.quantity),
            quote_quantity=market.quote(message.quote_quantity),
            fee=from_minor_units(
                message.fee, scale=market.quote_scale if fee_scale is None else fee_scale
            ),
            fee_asset=message.fee_asset,
            executed_at=timestamp_datetime(message.executed_at),
            engine_seq=message.engine_seq,
            raw=message,
        )


@dataclass(frozen=True)
class OrderResult:
    """The order after a place or amend command, and the fills it produced."""

    order: Order
    fills: tuple[Fill, ...]
    # Amends only: whether the order kept its place in the queue.
    priority_kept: bool | None = None


@dataclass(frozen=True)
class Balance:
    asset: str
    available: Decimal
    held: Decimal

    @property
    def total(self) -> Decimal:
        return self.available + self.held

    @classmethod
    def from_proto(cls, message: types_pb2.Balance, scale: int) -> Balance:
        return cls(
            asset=message.asset,
            available=from_minor_units(message.available, scale=scale),
            held=from_minor_units(message.held, scale=scale),
        )


@dataclass(frozen=True)
class Balances:
    """The account's live balances as of one engine sequence number."""

    balances: tuple[Balance, ...]
    engine_seq: int

    def __getitem__(self, asset: str) -> Balance:
        for balance in self.balances:
            if balance.asset == asset:
                return balance
        raise KeyError(asset)

    def get(self, asset: str) -> Balance | None:
        try:
            return self[asset]
        except KeyError:
            return None


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    asset: str
    kind: TransferKind
    amount: Decimal
    status: TransferStatus
    reject_reason: str | None
    reference: str
    memo: str
    created_at: datetime | None
    engine_seq: int
    raw: funding_pb2.Transfer = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: funding_pb2.Transfer, scale: int) -> Transfer:
        return cls(
            transfer_id=message.transfer_id,
            asset=message.asset,
            kind=TransferKind.from_proto(message.kind),
            amount=from_minor_units(message.amount, scale=scale),
            status=TransferStatus.from_proto(message.status),
            reject_reason=_reason_or_none(message.reject_reason),
            reference=message.reference,
            memo=message.memo,
            created_at=timestamp_datetime(message.created_at),
            engine_seq=message.engine_seq,
            raw=message,
        )


ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a list call; pass ``next_page_token`` back for the next ("" at the end)."""

    items: tuple[ItemT, ...]
    next_page_token: str


@dataclass(frozen=True)
class BookLevel:
    price: Decimal
    quantity: Decimal
    order_count: int


@dataclass(frozen=True)
class OrderBook:
    symbol: str
    seq: int
    # Best first: bids descending, asks ascending.
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    as_of: datetime | None

    @classmethod
    def from_proto(cls, message: marketdata_types_pb2.OrderBook, market: MarketSpec) -> OrderBook:
        def levels(entries: list[types_pb2.PriceLevel]) -> tuple[BookLevel, ...]:
            return tuple(
                BookLevel(
                    market.price(level.price), market.quantity(level.quantity), level.order_count
                )
                for level in entries
            )

        return cls(
            symbol=message.symbol,
            seq=message.seq,
            bids=levels(list(message.bids)),
            asks=levels(list(message.asks)),
            as_of=timestamp_datetime(message.as_of),
        )


@dataclass(frozen=True)
class PublicTrade:
    trade_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    taker_side: Side
    executed_at: datetime | None
    seq: int

    @classmethod
    def from_proto(
        cls, message: marketdata_types_pb2.PublicTrade, market: MarketSpec
    ) -> PublicTrade:
        return cls(
            trade_id=message.trade_id,
            symbol=message.symbol,
            price=market.price(message.price),
            quantity=market.quantity(message.quantity),
            quote_quantity=market.quote(message.quote_quantity),
            taker_side=Side.from_proto(message.taker_side),
            executed_at=timestamp_datetime(message.executed_at),
            seq=message.seq,
        )


@dataclass(frozen=True)
class Candle:
    symbol: str
    interval: CandleInterval
    open_time: datetime | None
    close_time: datetime | None
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    final: bool

    @classmethod
    def from_proto(cls, message: marketdata_types_pb2.Candle, market: MarketSpec) -> Candle:
        return cls(
            symbol=message.symbol,
            interval=CandleInterval.from_proto(message.interval),
            open_time=timestamp_datetime(message.open_time),
            close_time=timestamp_datetime(message.close_time),
            open=market.price(message.open),
            high=market.price(message.high),
            low=market.price(message.low),
            close=market.price(message.close),
            volume=market.quantity(message.volume),
            quote_volume=market.quote(message.quote_volume),
            trade_count=message.trade_count,
            final=message.final,
        )


@dataclass(frozen=True)
class Ticker:
    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    volume: Decimal
    quote_volume: Decimal
    change: Decimal
    change_bps: int
    trade_count: int
    # None when that side of the book is empty.
    best_bid: Decimal | None
    best_ask: Decimal | None
    window_end: datetime | None

    @classmethod
    def from_proto(cls, message: marketdata_types_pb2.Ticker, market: MarketSpec) -> Ticker:
        return cls(
            symbol=message.symbol,
            open=market.price(message.open),
            high=market.price(message.high),
            low=market.price(message.low),
            last=market.price(message.last),
            volume=market.quantity(message.volume),
            quote_volume=market.quote(message.quote_volume),
            change=market.price(message.change),
            change_bps=message.change_bps,
            trade_count=message.trade_count,
            best_bid=market.price(message.best_bid) if message.best_bid else None,
            best_ask=market.price(message.best_ask) if message.best_ask else None,
            window_end=timestamp_datetime(message.window_end),
        )


# ---- streaming order entry ----


@dataclass(frozen=True)
class PlaceOrder:
    """A new order in a StreamOrders batch (the same fields as ``place_order``)."""

    symbol: str
    side: Side
    quantity: DecimalInput | None = None
    price: DecimalInput | None = None
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.UNSPECIFIED
    quote_quantity: DecimalInput | None = None
    post_only: bool = False
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.UNSPECIFIED
    # The idempotency key; generated when empty.
    client_order_id: str = ""


@dataclass(frozen=True)
class CancelOrder:
    """A cancel in a StreamOrders batch, by order_id or client_order_id. ``symbol`` is the
    market of the order, needed to read the cancelled order's amounts."""

    symbol: str
    order_id: str = ""
    client_order_id: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class AmendOrder:
    symbol: str
    order_id: str
    new_quantity: DecimalInput | None = None
    new_price: DecimalInput | None = None
    request_id: str = ""


@dataclass(frozen=True)
class CancelAllOrders:
    """Cancel every open order (``symbol`` empty) or those of one market."""

    symbol: str = ""
    request_id: str = ""


OrderCommand = PlaceOrder | CancelOrder | AmendOrder | CancelAllOrders


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command of a batch: an order, or a rejection (never both)."""

    order: Order | None
    error: ExchangeError | None
    fills: tuple[Fill, ...]
    cancelled_count: int

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_proto(
        cls, message: trading_pb2.OrderCommandResult, markets: Mapping[str, MarketSpec]
    ) -> CommandResult:
        """``markets`` holds the spec of every symbol the result mentions."""
        if message.HasField("error"):
            return cls(
                order=None,
                error=from_command_error(message.error),
                fills=(),
                cancelled_count=message.cancelled_count,
            )
        order = None
        if message.HasField("order"):
            order = Order.from_proto(message.order, markets[message.order.symbol])
        fills = tuple(Fill.from_proto(fill, markets[fill.symbol]) for fill in message.fills)
        return cls(order=order, error=None, fills=fills, cancelled_count=message.cancelled_count)


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    results: tuple[CommandResult, ...]
    engine_seq: int

    @property
    def errors(self) -> tuple[ExchangeError, ...]:
        return tuple(result.error for result in self.results if result.error is not None)
