"""Testing helper: drive an Engine with consecutive engine_seq values and synthetic time.

Services assign engine_seq and timestamp_ns from their sequencer; tests and simulations use
`EngineDriver`, which numbers commands 1, 2, 3 ... and advances a fake clock by a fixed step.
Nothing here reads a real clock.
"""

from __future__ import annotations

from typing import Final, TypeVar

from core.engine.commands import Command, CreateAsset, CreateMarket, Deposit, PlaceOrder
from core.engine.engine import Engine
from core.engine.enums import OrderType, SelfTradePrevention, Side, TimeInForce
from core.engine.events import Event
from core.engine.market import MarketSpec
from core.engine.results import ApplyResult

EventT = TypeVar("EventT", bound=Event)

TIMESTAMP_NS_START: Final = 1_700_000_000_000_000_000
TIMESTAMP_NS_STEP: Final = 1_000

BTC_SCALE: Final = 8
USDT_SCALE: Final = 6
BTC: Final = 10**BTC_SCALE  # one whole BTC in minor units
USDT: Final = 10**USDT_SCALE  # one whole USDT in minor units
SYMBOL: Final = "BTC-USDT"


def limit_order(
    account_id: str,
    side: Side,
    quantity: int,
    price: int,
    *,
    symbol: str = SYMBOL,
    time_in_force: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST,
    client_order_id: str = "",
) -> PlaceOrder:
    return PlaceOrder(
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_type=OrderType.LIMIT,
        quantity=quantity,
        price=price,
        time_in_force=time_in_force,
        post_only=post_only,
        self_trade_prevention=self_trade_prevention,
        client_order_id=client_order_id,
    )


def market_order(
    account_id: str,
    side: Side,
    *,
    quantity: int = 0,
    quote_quantity: int = 0,
    symbol: str = SYMBOL,
    time_in_force: TimeInForce = TimeInForce.IOC,
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST,
    client_order_id: str = "",
) -> PlaceOrder:
    return PlaceOrder(
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_type=OrderType.MARKET,
        quantity=quantity,
        quote_quantity=quote_quantity,
        time_in_force=time_in_force,
        self_trade_prevention=self_trade_prevention,
        client_order_id=client_order_id,
    )


def events_of(result: ApplyResult, event_type: type[EventT]) -> list[EventT]:
    """The result's events of one type, in order."""
    return [event for event in result.events if isinstance(event, event_type)]


def btc_usdt_spec(**overrides: int | str) -> MarketSpec:
    """BTC-USDT: tick 0.01 USDT, lot 0.0001 BTC, 10% band, maker 0.1%, taker 0.2%."""
    values: dict[str, int | str] = {
        "symbol": "BTC-USDT",
        "base_asset": "BTC",
        "quote_asset": "USDT",
        "base_scale": BTC_SCALE,
        "quote_scale": USDT_SCALE,
        "price_tick": USDT // 100,
        "lot_step": BTC // 10_000,
        "min_quantity": BTC // 10_000,
        "max_quantity": 100 * BTC,
        "min_notional": 1 * USDT,
        "price_band_bps": 1_000,
        "maker_fee_ppm": 1_000,
        "taker_fee_ppm": 2_000,
        "reference_price": 50_000 * USDT,
    }
    values.update(overrides)
    return MarketSpec(**values)  # type: ignore[arg-type]


def coarse_spec(**overrides: int | str) -> MarketSpec:
    """The property tests' market (BTC-USDT unless overridden): whole-USDT ticks, 0.01 BTC
    lots, a 5% band around 1,000 USDT, maker 0.1%, taker 0.25% - coarse, so random orders
    meet often."""
    values: dict[str, int | str] = {
        "price_tick": USDT,
        "lot_step": BTC // 100,
        "min_quantity": BTC // 100,
        "min_notional": 5 * USDT,
        "price_band_bps": 500,
        "reference_price": 1_000 * USDT,
        "maker_fee_ppm": 1_000,
        "taker_fee_ppm": 2_500,
    }
    values.update(overrides)
    return btc_usdt_spec(**values)


class EngineDriver:
    """Applies commands with engine_seq = 1, 2, 3 ... and a deterministic fake clock."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine if engine is not None else Engine()
        self.engine_seq_last = self.engine.engine_seq_last
        self.timestamp_ns = TIMESTAMP_NS_START + self.engine_seq_last * TIMESTAMP_NS_STEP

    def apply(self, command: Command) -> ApplyResult:
        self.engine_seq_last += 1
        self.timestamp_ns += TIMESTAMP_NS_STEP
        return self.engine.apply(
            command, engine_seq=self.engine_seq_last, timestamp_ns=self.timestamp_ns
        )

    def bootstrap_btc_usdt(self, spec: MarketSpec | None = None) -> MarketSpec:
        """Create BTC, USDT and the BTC-USDT market; raise if anything is rejected."""
        spec = spec if spec is not None else btc_usdt_spec()
        for command in (
            CreateAsset(asset="BTC", scale=BTC_SCALE),
            CreateAsset(asset="USDT", scale=USDT_SCALE),
            CreateMarket(spec=spec),
        ):
            result = self.apply(command)
            if not result.outcome.accepted:
                msg = f"bootstrap command {command!r} rejected: {result.outcome.reason}"
                raise ValueError(msg)
        return spec

    def fund(self, account_id: str, asset: str, amount: int) -> None:
        transfer_id = f"fund-{self.engine_seq_last + 1}"
        result = self.apply(
            Deposit(account_id=account_id, asset=asset, amount=amount, transfer_id=transfer_id)
        )
        if not result.outcome.accepted:
            msg = f"deposit rejected: {result.outcome.reason}"
            raise ValueError(msg)
