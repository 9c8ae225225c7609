"""The pure, deterministic matching + risk engine of the exchange (no I/O, no clock).

Public API: `Engine` (apply commands, query state, snapshot/restore), the command and event
dataclasses, the enums, `MarketSpec`, `EngineConfig` and `EngineInvariantError`. See
core/engine/README.md for the money rules, invariants and guarantees.
"""

from core.engine.balances import FEE_ACCOUNT_ID
from core.engine.commands import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetMarketMode,
    Withdraw,
)
from core.engine.engine import Engine, EngineConfig
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
from core.engine.market import MarketSpec
from core.engine.results import (
    ApplyResult,
    BalanceView,
    BookDepth,
    DepthLevel,
    MarketView,
    OrderView,
    Outcome,
)
from core.engine.snapshot import SnapshotCapture

__all__ = [
    "FEE_ACCOUNT_ID",
    "AdjustBalance",
    "AmendOrder",
    "ApplyResult",
    "AssetCreated",
    "BalanceAdjusted",
    "BalanceView",
    "BookDepth",
    "CancelAllOrders",
    "CancelOrder",
    "CancelReason",
    "Command",
    "CreateAsset",
    "CreateMarket",
    "Deposit",
    "DepthLevel",
    "Engine",
    "EngineConfig",
    "EngineInvariantError",
    "Event",
    "FundsDeposited",
    "FundsReleased",
    "FundsReserved",
    "FundsWithdrawn",
    "MarketCreated",
    "MarketMode",
    "MarketModeChanged",
    "MarketSpec",
    "MarketView",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderExpired",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "OrderView",
    "Outcome",
    "PlaceOrder",
    "RejectReason",
    "SelfTradePrevention",
    "SetMarketMode",
    "Side",
    "SnapshotCapture",
    "TimeInForce",
    "TradeExecuted",
    "Withdraw",
]
