"""Order checks: whether a place or an amend is acceptable, as the named rejection or None.

Checked in a fixed order, the first failing rule is the outcome (the replay gate holds it):
- a LIMIT place (`check_limit_place`, the hot path, in one frame): time in force with
  post-only, no quote budget, then price, quantity, band and notional
  (`check_price_quantity_band_notional`), then for GTC the open-order limit and post-only
  against the book, the reservation's int64 range, FOK fillability, and the balance;
- a MARKET place (`check_market_place`, then `check_market_place_dynamic`): time in force,
  no price, exactly one of quantity / quote budget (a budget for a BUY IOC only), its range
  and minimum notional; then liquidity, the reservation (a buy by quantity walks the book
  for its cost), FOK fillability and the balance;
- an amend's new terms (`check_price_quantity_band_notional`, the band only for a price
  change).
Nothing here changes state: a check reads the market, the book and the balances.
"""

from __future__ import annotations

from typing import Final

from core.engine.balances import Balance
from core.engine.book import Order
from core.engine.commands import PlaceOrder
from core.engine.enums import RejectReason, Side, TimeInForce
from core.engine.errors import EngineInvariantError
from core.engine.fees import fee_for
from core.engine.market_state import Market
from core.engine.matching import fillable
from core.engine.money import INT64_MAX, band_price_max, band_price_min, price_within_band

_BUY: Final = Side.BUY
_GTC: Final = TimeInForce.GTC
_FOK: Final = TimeInForce.FOK

# The place checks' result: (reason, reservation, limit key); the last two are 0 on a reason.
PlaceCheck = tuple[RejectReason | None, int, int]


def check_quantity(market: Market, quantity: int) -> RejectReason | None:
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


def check_price_quantity_band_notional(  # noqa: PLR0911  (one guard per named rejection)
    market: Market, price: int, quantity: int, *, check_band: bool = True
) -> RejectReason | None:
    """The terms of a limit order: price (positive, on the tick), quantity (as
    `check_quantity`), the price band around the market's reference price (unless
    `check_band` is false) and the minimum notional."""
    if price <= 0:
        return RejectReason.PRICE_INVALID
    if price > INT64_MAX:
        return RejectReason.AMOUNT_OUT_OF_RANGE
    if price % market.price_tick:
        return RejectReason.PRICE_TICK_VIOLATION
    quantity_rejected = check_quantity(market, quantity)
    if quantity_rejected is not None:
        return quantity_rejected
    if check_band and not price_within_band(price, market.reference_price, market.band_bps):
        return RejectReason.PRICE_OUT_OF_BAND
    if price * quantity // market.base_unit < market.min_notional:
        return RejectReason.NOTIONAL_BELOW_MIN
    return None


def check_market_place(  # noqa: PLR0911  (one guard per named rejection)
    market: Market, command: PlaceOrder
) -> RejectReason | None:
    """Static checks of a new MARKET order in a NORMAL market (no book, no balances)."""
    tif = command.time_in_force
    if tif is _GTC or command.post_only:
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
    return check_quantity(market, quantity)


def check_limit_place(  # noqa: PLR0911, PLR0912  (one guard per named rejection)
    market: Market,
    command: PlaceOrder,
    open_orders: dict[str, dict[int, Order]],
    open_orders_max_per_account: int,
    balances: dict[tuple[str, str], Balance],
) -> PlaceCheck:
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
    reason = check_price_quantity_band_notional(market, price, quantity)
    if reason is not None:
        return reason, 0, 0
    account_id = command.account_id
    is_buy = command.side is _BUY
    limit_key = -price if is_buy else price
    if tif is _GTC:
        account_orders = open_orders.get(account_id)
        if account_orders is not None and len(account_orders) >= open_orders_max_per_account:
            return RejectReason.OPEN_ORDER_LIMIT_EXCEEDED, 0, 0
        if post_only and (market.book.asks if is_buy else market.book.bids).reaches(limit_key):
            return RejectReason.POST_ONLY_WOULD_TAKE, 0, 0
    cells = market.cells.get(account_id)
    if is_buy:
        # notional(price, quantity), inlined; exact (invariant 7).
        amount, inexact = divmod(price * quantity, market.base_unit)
        if inexact:
            raise EngineInvariantError(f"inexact notional {price}*{quantity} in {market.symbol}")
        reserve = amount + fee_for(amount, market.taker_fee_ppm)
        if reserve > INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE, 0, 0
        cell = balances.get((account_id, market.quote_asset)) if cells is None else cells[1]
    else:
        reserve = quantity
        cell = balances.get((account_id, market.base_asset)) if cells is None else cells[0]
    if tif is _FOK:
        reason = fok_reason(market, command, limit_key)
        if reason is not None:
            return reason, 0, 0
    if reserve > (0 if cell is None else cell.available):
        return RejectReason.INSUFFICIENT_BALANCE, 0, 0
    return None, reserve, limit_key


def check_market_place_dynamic(
    market: Market, command: PlaceOrder, balances: dict[tuple[str, str], Balance]
) -> PlaceCheck:
    """Checks of a MARKET order against the book and balances: (reason, reserve, key)."""
    side = command.side
    is_buy = side is _BUY
    account_id = command.account_id
    book = market.book
    opposite = book.asks if is_buy else book.bids
    if opposite.best_key() is None:
        return RejectReason.NO_LIQUIDITY, 0, 0
    if is_buy:
        limit_key = -band_price_max(market.reference_price, market.band_bps)
        if command.quote_quantity:
            budget = command.quote_quantity
            reserve = budget + fee_for(budget, market.taker_fee_ppm)
        else:
            _, amount = fillable(
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
    if command.time_in_force is _FOK:
        reason = fok_reason(market, command, limit_key)
        if reason is not None:
            return reason, 0, 0
    reserve_asset = market.quote_asset if is_buy else market.base_asset
    cell = balances.get((account_id, reserve_asset))
    if reserve > (0 if cell is None else cell.available):
        return RejectReason.INSUFFICIENT_BALANCE, 0, 0
    return None, reserve, limit_key


def fok_reason(market: Market, command: PlaceOrder, limit_key: int) -> RejectReason | None:
    """FOK_UNFILLABLE unless matching could fill the whole quantity right now."""
    filled, _ = fillable(
        market,
        side=command.side,
        account_id=command.account_id,
        self_trade_prevention=command.self_trade_prevention,
        limit_key=limit_key,
        quantity=command.quantity,
    )
    return RejectReason.FOK_UNFILLABLE if filled < command.quantity else None
