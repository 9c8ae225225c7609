"""Typed Python client of the exchange.

The generated contracts ship in the same wheel as the ``exchange`` package
(``exchange.trading.v1`` and so on); this package is the hand-written public API.
"""

from exchange_sdk.errors import ExchangeError, PrecisionExceededError, error_reason_name
from exchange_sdk.money import from_minor_units, to_minor_units

__all__ = [
    "ExchangeError",
    "PrecisionExceededError",
    "error_reason_name",
    "from_minor_units",
    "to_minor_units",
]
