"""Matching: an incoming (taker) order against the opposite side of its market's book.

Rules (invariant numbers are those of core/engine/README.md):
- Price-time priority (invariant 1): the best opposite level first, FIFO within it; every
  trade is at the resting (maker) order's price; the taker goes on while the best level's key
  is >= its limit key (keys are "best last": bid key = price, ask key = -price, so a buy's limit
  key is -limit price and a sell's +limit price; a market order's is its band edge).
- A quote budget (market buy by quote amount) buys, at each price, the whole lots it can
  still afford; it is complete when that is none.
- Self-trade prevention acts on the taker's mode when it meets its own resting order:
  CANCEL_NEWEST stops the taker, CANCEL_OLDEST cancels the resting order and goes on,
  CANCEL_BOTH cancels the resting order and stops the taker (SELF_TRADE_PREVENTION).
- Every notional is exact (invariant 7); fees are fees.py's; each fill moves the cost out of
  the payer's held reservation and never overdraws one (invariant 6, else
  EngineInvariantError); the last trade price becomes the market's reference price.

The book's representation is book.py's: matching sees the best level within the limit
(`BookSide.best_level`), its first live order (`PriceLevel.head`), a fill of it
(`BookSide.fill_head`) and its removal (`BookSide.pop_head`). The engine owns the state
around: it passes the command's event list, sequence and time, the fee account's cell and
the trade counter, and `close`, its bookkeeping of an order that leaves the book.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from core.engine.balances import Balance
from core.engine.book import Order
from core.engine.enums import CancelReason, OrderStatus, SelfTradePrevention, Side
from core.engine.errors import EngineInvariantError
from core.engine.events import Event, OrderCancelled, TradeExecuted
from core.engine.fast_frozen import positional_constructor
from core.engine.fees import fill_fees
from core.engine.market_state import Market
from core.engine.money import notional

# Why matching stopped.
STOP_COMPLETE: Final = 0  # taker filled, or a quote budget cannot buy one more lot
STOP_SELF_TRADE: Final = 1  # self-trade prevention ended the taker
STOP_LIMIT: Final = 2  # the best opposite level is beyond the limit price / band edge
STOP_EMPTY: Final = 3  # the opposite side ran out

_BUY: Final = Side.BUY
_CANCEL_NEWEST: Final = SelfTradePrevention.CANCEL_NEWEST
_CANCEL_BOTH: Final = SelfTradePrevention.CANCEL_BOTH
_CANCEL_OLDEST: Final = SelfTradePrevention.CANCEL_OLDEST
_FILLED: Final = OrderStatus.FILLED
_PARTIALLY_FILLED: Final = OrderStatus.PARTIALLY_FILLED
_CANCELLED: Final = OrderStatus.CANCELLED
_SELF_TRADE_PREVENTION: Final = CancelReason.SELF_TRADE_PREVENTION

_new_trade_executed = positional_constructor(TradeExecuted)
_new_order_cancelled = positional_constructor(OrderCancelled)

Close = Callable[[Market, Order, OrderStatus], None]


def match(  # noqa: PLR0912, PLR0915  (hot loop kept in one frame on purpose)
    market: Market,
    taker: Order,
    limit_key: int,
    budget: int,
    *,
    fee_cell: Balance,
    trade_id_last: int,
    events: list[Event],
    engine_seq: int,
    timestamp_ns: int,
    close: Close,
) -> tuple[int, int]:
    """Match `taker` against the opposite side while the best key is >= limit_key.

    `budget` > 0 means a market buy that spends a quote budget. Trades get the ids after
    `trade_id_last`; events are appended to `events`. Returns (why it stopped, the last
    trade id).
    """
    is_buy = taker.side is _BUY
    book = market.book
    opposite = book.asks if is_buy else book.bids
    best_level = opposite.best_level
    fill_head = opposite.fill_head
    base_unit = market.base_unit
    lot_step = market.lot_step
    maker_ppm = market.maker_fee_ppm
    taker_ppm = market.taker_fee_ppm
    symbol = market.symbol
    taker_account = taker.account_id
    taker_order_id = taker.order_id
    taker_side = taker.side
    taker_reserve = taker.reserve_balance
    taker_proceeds = taker.proceeds_balance
    append = events.append
    new_trade = _new_trade_executed
    budget_mode = budget > 0
    remaining = taker.quantity_remaining
    stop = -1
    last_price = 0
    while stop < 0:
        level = best_level(limit_key)
        if level is None:
            stop = STOP_EMPTY if opposite.best_key() is None else STOP_LIMIT
            break
        price = level.price
        while True:
            if budget_mode:
                affordable = budget * base_unit // price
                remaining = affordable - affordable % lot_step
            if remaining == 0:
                stop = STOP_COMPLETE
                break
            maker = level.head()
            if maker is None:  # the level is used up (and gone from the book)
                break
            if maker.account_id == taker_account:
                mode = taker.self_trade_prevention
                if mode is _CANCEL_NEWEST:
                    stop = STOP_SELF_TRADE
                    break
                opposite.pop_head(level)
                market.stream_seq += 1
                append(
                    _new_order_cancelled(
                        symbol,
                        market.stream_seq,
                        engine_seq,
                        timestamp_ns,
                        maker.order_id,
                        maker.account_id,
                        _SELF_TRADE_PREVENTION,
                        maker.quantity_remaining,
                    )
                )
                close(market, maker, _CANCELLED)
                if mode is _CANCEL_BOTH:
                    stop = STOP_SELF_TRADE
                    break
                continue
            maker_remaining = maker.quantity_remaining
            quantity = remaining if remaining < maker_remaining else maker_remaining
            quote_amount, inexact = divmod(price * quantity, base_unit)
            if inexact:  # invariant 7
                msg = f"inexact notional {price}*{quantity}/{base_unit} in {symbol}"
                raise EngineInvariantError(msg)
            maker_fee, taker_fee = fill_fees(maker, taker, quote_amount, maker_ppm, taker_ppm)
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
            if maker.reserved_amount < 0 or taker.reserved_amount < 0:  # invariant 6
                msg = f"reservation overdrawn: maker {maker!r} taker {taker!r}"
                raise EngineInvariantError(msg)
            maker_remaining = fill_head(level, maker, quantity)
            taker.filled_quantity += quantity
            if budget_mode:
                budget -= quote_amount
                taker_remaining = 0
            else:
                remaining -= quantity
                taker.quantity_remaining = remaining
                taker_remaining = remaining
            last_price = price
            trade_id_last += 1
            market.stream_seq += 1
            append(
                new_trade(
                    symbol,
                    market.stream_seq,
                    engine_seq,
                    timestamp_ns,
                    trade_id_last,
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
                close(market, maker, _FILLED)
            else:
                maker.status = _PARTIALLY_FILLED
    if last_price:
        market.reference_price = last_price
    return stop, trade_id_last


def fillable(
    market: Market,
    *,
    side: Side,
    account_id: str,
    self_trade_prevention: SelfTradePrevention,
    limit_key: int,
    quantity: int,
) -> tuple[int, int]:
    """What `match` would fill right now, without changing anything: (quantity fillable up
    to `quantity`, its notional). Like `match`, CANCEL_OLDEST skips own orders and the other
    modes stop at the first one."""
    opposite = market.book.asks if side is _BUY else market.book.bids
    base_unit = market.base_unit
    filled = 0
    amount = 0
    for maker in opposite.live_orders_up_to(limit_key):
        if maker.account_id == account_id:
            if self_trade_prevention is _CANCEL_OLDEST:
                continue
            return filled, amount
        take = min(quantity - filled, maker.quantity_remaining)
        filled += take
        amount += notional(maker.price, take, base_unit)
        if filled == quantity:
            return filled, amount
    return filled, amount
