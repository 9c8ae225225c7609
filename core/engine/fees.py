"""Fees: every maker and taker fee the engine computes, reserves or charges is computed here.

Rules (decided; see core/engine/README.md, "Money rules"):
1. A fee is a quote-asset amount in minor units, in favour of the exchange:
   fee = ceil(notional * fee_ppm / 1_000_000) (`fee_for`).
2. The ceiling applies to each order's CUMULATIVE fee: an order filled in pieces has paid
   ceil(sum(notional_i * fee_ppm_i) / 1_000_000) after them (`Order.fee_ppm_units` holds the
   sum, `Order.fees_paid` the ceiling already charged), never more rounding than one fill of
   the same notional. Per-fill ceilings could exceed the reserved fee by one unit per fill.
3. The resting order of a trade pays the market's maker_fee_ppm, the incoming one its
   taker_fee_ppm (`fill_fees`). Markets require 0 <= maker_fee_ppm <= taker_fee_ppm.
4. A buy reserves its notional plus the TAKER fee on it (`buy_reserve_needed`; a new order
   reserves `notional + fee_for(notional, taker_fee_ppm)`), which covers its fills whichever
   role they take (rule 3).
"""

from __future__ import annotations

from core.engine.book import Order
from core.engine.money import PPM, notional


def fee_for(notional_amount: int, fee_ppm: int) -> int:
    """Fee on a single notional amount, rounded up (rule 1)."""
    return -(-notional_amount * fee_ppm // PPM)


def fill_fees(
    maker: Order, taker: Order, quote_amount: int, maker_fee_ppm: int, taker_fee_ppm: int
) -> tuple[int, int]:
    """Charge one fill of `quote_amount` to both orders' cumulative fees (rules 2 and 3);
    returns (maker fee, taker fee) of this fill. The hot path: one call per trade."""
    units = maker.fee_ppm_units + quote_amount * maker_fee_ppm
    maker.fee_ppm_units = units
    total = -(-units // PPM)
    maker_fee = total - maker.fees_paid
    maker.fees_paid = total
    units = taker.fee_ppm_units + quote_amount * taker_fee_ppm
    taker.fee_ppm_units = units
    total = -(-units // PPM)
    taker_fee = total - taker.fees_paid
    taker.fees_paid = total
    return maker_fee, taker_fee


def buy_reserve_needed(
    order: Order, price: int, remaining: int, base_unit: int, taker_fee_ppm: int
) -> int:
    """Worst-case cost of `remaining` more of a buy at `price` as a taker, given the fees the
    order has already paid (rule 4): what its reservation must cover (invariant 6)."""
    amount = notional(price, remaining, base_unit)
    fee_total = -(-(order.fee_ppm_units + amount * taker_fee_ppm) // PPM)
    return amount + fee_total - order.fees_paid
