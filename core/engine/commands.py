"""Commands: the only inputs of the engine.

Commands are immutable values. They carry no time and no engine-assigned id: the caller passes
`engine_seq` and `timestamp_ns` to `Engine.apply`. Two commands with equal fields are the same
request, which is what client order id / transfer id idempotency compares.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.engine.enums import MarketMode, OrderType, SelfTradePrevention, Side, TimeInForce
from core.engine.market import MarketSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAsset:
    asset: str
    scale: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateMarket:
    spec: MarketSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMarketMode:
    symbol: str
    mode: MarketMode


@dataclass(frozen=True, slots=True, kw_only=True)
class Deposit:
    account_id: str
    asset: str
    amount: int
    transfer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw:
    account_id: str
    asset: str
    amount: int
    transfer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AdjustBalance:
    """A signed correction of `available`; it can never make `available` negative."""

    account_id: str
    asset: str
    delta: int
    transfer_id: str
    memo: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder:
    """A new order.

    LIMIT: `price` and `quantity` (base minor units) are required, `quote_quantity` is 0.
    MARKET: `price` is 0 and exactly one of `quantity` (base) or `quote_quantity` (a quote
    budget, BUY only, IOC only) is set.
    """

    account_id: str
    symbol: str
    side: Side
    order_type: OrderType = OrderType.LIMIT
    quantity: int = 0
    price: int = 0
    quote_quantity: int = 0
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    client_order_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    """Cancel one of the account's own orders by `order_id` (if non-zero) or `client_order_id`."""

    account_id: str
    order_id: int = 0
    client_order_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAllOrders:
    """Cancel every open order of the account, in one market if `symbol` is set."""

    account_id: str
    symbol: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AmendOrder:
    """Change a resting order's price and/or total quantity (filled part included)."""

    account_id: str
    price: int
    quantity: int
    order_id: int = 0
    client_order_id: str = ""


Command = (
    CreateAsset
    | CreateMarket
    | SetMarketMode
    | Deposit
    | Withdraw
    | AdjustBalance
    | PlaceOrder
    | CancelOrder
    | CancelAllOrders
    | AmendOrder
)
FundingCommand = Deposit | Withdraw | AdjustBalance
