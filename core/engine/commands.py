"""Commands: the only inputs of the engine.

Commands are immutable values. They carry no time and no engine-assigned id: the caller passes
`engine_seq` and `timestamp_ns` to `Engine.apply`. Two commands with equal fields are the same
request, which is what client order id / transfer id / request id idempotency compares.
`request_id` (cancel, cancel-all, amend, market mode) is the caller's AIP-155 key: a non-empty
one makes the command idempotent in the engine (see Engine._keyed and ADR 0016); "" is not
keyed.
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
    """`operator_id` and `request_id` key the operator's retry (both empty: not keyed)."""

    symbol: str
    mode: MarketMode
    operator_id: str = ""
    request_id: str = ""


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
    request_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAllOrders:
    """Cancel every open order of the account, in one market if `symbol` is set."""

    account_id: str
    symbol: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AmendOrder:
    """Change a resting order's price and/or total quantity (filled part included); a 0
    price or quantity keeps the order's current one (decided when the command is applied)."""

    account_id: str
    price: int
    quantity: int
    order_id: int = 0
    client_order_id: str = ""
    request_id: str = ""


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
KeyedCommand = CancelOrder | CancelAllOrders | AmendOrder | SetMarketMode
"""Commands whose `request_id` the engine remembers (per account; per operator for modes)."""
