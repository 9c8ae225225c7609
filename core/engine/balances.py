"""Per (account, asset) balances.

Invariants:
- available >= 0 and held >= 0 at all times (the engine raises if a move would break them);
- held == the sum of `reserved_amount` of the account's open orders on that asset;
- for every asset, the sum of available + held over all accounts (the fee account included)
  equals the asset's supply, which only funding commands change.
"""

from __future__ import annotations

from typing import Final

FEE_ACCOUNT_ID: Final = "exchange:fees"


class Balance:
    """Mutable cell; orders keep a direct reference to the cells they settle against."""

    __slots__ = ("account_id", "asset", "available", "held")

    def __init__(self, account_id: str, asset: str, available: int = 0, held: int = 0) -> None:
        self.account_id = account_id
        self.asset = asset
        self.available = available
        self.held = held

    def __repr__(self) -> str:
        return (
            f"Balance({self.account_id!r}, {self.asset!r}, "
            f"available={self.available}, held={self.held})"
        )
