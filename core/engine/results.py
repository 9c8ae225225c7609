"""What `Engine.apply` returns, and the read-only views returned by queries."""

from __future__ import annotations

from dataclasses import dataclass

from core.engine.enums import (
    MarketMode,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.events import Event
from core.engine.market import MarketSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The result of one command, as first decided (idempotent retries return it again).

    `order_id` is the placed / targeted order (0 if none); `status` and `filled_quantity` are
    the order's state when the command finished; `cancelled_order_ids` lists what a
    cancel-all cancelled; `priority_kept` tells whether an accepted amend kept time priority.
    """

    engine_seq: int
    reason: RejectReason | None = None
    order_id: int = 0
    status: OrderStatus | None = None
    filled_quantity: int = 0
    cancelled_order_ids: tuple[int, ...] = ()
    priority_kept: bool = False  # an amend that kept the order's time priority

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """`duplicate` is True when an idempotent retry returned a stored outcome (no events)."""

    outcome: Outcome
    events: tuple[Event, ...]
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderView:
    order_id: int
    account_id: str
    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    price: int
    quantity: int
    filled_quantity: int
    quantity_remaining: int
    reserved_amount: int
    status: OrderStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceView:
    account_id: str
    asset: str
    available: int
    held: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthLevel:
    price: int
    quantity: int
    order_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BookDepth:
    """Aggregated levels, best first, as of market stream sequence `seq`."""

    symbol: str
    seq: int
    bids: tuple[DepthLevel, ...]
    asks: tuple[DepthLevel, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketView:
    spec: MarketSpec
    mode: MarketMode
    reference_price: int
    seq: int
