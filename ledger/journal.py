"""The ledger's domain values: accounts, entries and postings (no I/O, no ORM).

Invariants these types keep (checked at construction, so nothing unbalanced ever reaches
the database, which checks them again):
- an amount is a Python int in minor units of its asset; a posting's amount is non-zero;
- an entry's postings sum to zero per asset, and no account appears twice in one entry
  (legs of the same account are merged before an entry is built);
- an account is identified by (owner_id, asset, kind); the fee account is the core's
  `exchange:fees` owner with kind FEES, and the contra account of deposits, withdrawals
  and adjustments is `exchange:external` with kind EXTERNAL (one per asset).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Final, NamedTuple

from exchange.ledger.types.v1 import types_pb2

from ledger.errors import LedgerError, Reason

FEE_OWNER_ID: Final = "exchange:fees"  # the core's FEE_ACCOUNT_ID (core/engine/balances.py)
EXTERNAL_OWNER_ID: Final = "exchange:external"
INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)


class AccountKind(IntEnum):
    """Same numbers as exchange.ledger.types.v1.AccountKind (stored as SMALLINT)."""

    AVAILABLE = types_pb2.ACCOUNT_KIND_AVAILABLE
    HELD = types_pb2.ACCOUNT_KIND_HELD
    FEES = types_pb2.ACCOUNT_KIND_FEES
    EXTERNAL = types_pb2.ACCOUNT_KIND_EXTERNAL


class EntryKind(IntEnum):
    """Same numbers as exchange.ledger.types.v1.EntryKind (stored as SMALLINT)."""

    RESERVE = types_pb2.ENTRY_KIND_RESERVE
    RELEASE = types_pb2.ENTRY_KIND_RELEASE
    TRADE = types_pb2.ENTRY_KIND_TRADE
    DEPOSIT = types_pb2.ENTRY_KIND_DEPOSIT
    WITHDRAWAL = types_pb2.ENTRY_KIND_WITHDRAWAL
    ADJUSTMENT = types_pb2.ENTRY_KIND_ADJUSTMENT
    REVERSAL = types_pb2.ENTRY_KIND_REVERSAL
    CORRECTION = types_pb2.ENTRY_KIND_CORRECTION


EntryKey = tuple[EntryKind, str]  # (kind, reference): unique per entry in the journal


class AccountKey(NamedTuple):
    """A tuple (cheap to build and hash on the settlement hot path); `checked_account`
    validates one built from outside input."""

    owner_id: str
    asset: str
    kind: AccountKind


class Posting(NamedTuple):
    account: AccountKey
    amount: int


def checked_account(owner_id: str, asset: str, kind: AccountKind) -> AccountKey:
    if not owner_id or not asset:
        raise LedgerError(
            Reason.FIELD_INVALID, "an account needs an owner and an asset", field="account"
        )
    return AccountKey(owner_id, asset, kind)


def available(owner_id: str, asset: str) -> AccountKey:
    """An owner's free balance; the fee owner's balance is its FEES account."""
    kind = AccountKind.FEES if owner_id == FEE_OWNER_ID else AccountKind.AVAILABLE
    return AccountKey(owner_id, asset, kind)


def held(owner_id: str, asset: str) -> AccountKey:
    return AccountKey(owner_id, asset, AccountKind.HELD)


def fees(asset: str) -> AccountKey:
    return AccountKey(FEE_OWNER_ID, asset, AccountKind.FEES)


def external(asset: str) -> AccountKey:
    return AccountKey(EXTERNAL_OWNER_ID, asset, AccountKind.EXTERNAL)


class BalancedPostings(tuple[Posting, ...]):
    """Postings as `balanced_postings` returns them: at least two, each account once, none
    zero, every asset summing to zero, every amount an int64. Only that function makes one,
    so an entry given one need not check it again (the settlement hot path)."""

    __slots__ = ()


def balanced_postings(legs: list[tuple[AccountKey, int]]) -> BalancedPostings:
    """Merge legs per account, drop zero legs, and refuse anything that does not balance.

    Order is kept (first appearance of each account), so the same legs always give the same
    postings. (On the settlement hot path: plain dicts and one pass per loop; two opposite
    legs of one asset, a reservation's or a release's, are taken as they are.)
    """
    if len(legs) == 2:
        (first, amount), (second, opposite) = legs
        if (
            type(amount) is int
            and type(opposite) is int
            and amount == -opposite
            and 0 < abs(amount) <= INT64_MAX
            and first != second
            and first[1] == second[1]
        ):
            return BalancedPostings((Posting(first, amount), Posting(second, opposite)))
    merged: dict[AccountKey, int] = {}
    for account, amount in legs:
        if type(amount) is not int:
            raise LedgerError(Reason.FIELD_INVALID, f"amount must be an int, got {amount!r}")
        merged[account] = merged.get(account, 0) + amount
    totals: dict[str, int] = {}
    postings: list[Posting] = []
    for account, amount in merged.items():
        if not INT64_MIN <= amount <= INT64_MAX:
            raise LedgerError(Reason.AMOUNT_OUT_OF_RANGE, f"{account}: {amount} exceeds int64")
        asset = account[1]
        totals[asset] = totals.get(asset, 0) + amount
        if amount != 0:
            postings.append(Posting(account, amount))
    if any(totals.values()):
        unbalanced = {asset: total for asset, total in totals.items() if total != 0}
        raise LedgerError(Reason.ENTRY_UNBALANCED, f"postings do not sum to zero: {unbalanced}")
    if not postings:
        raise LedgerError(Reason.ENTRY_UNBALANCED, "an entry needs at least one non-zero leg")
    return BalancedPostings(postings)


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    """An entry about to be posted. `reference` is unique per kind (the trade id for trades,
    the event id for other events, the correction id for corrections)."""

    kind: EntryKind
    reference: str
    postings: tuple[Posting, ...]
    source_event_id: str = ""
    shard_id: str = ""
    symbol: str = ""
    seq: int = 0
    engine_seq: int = 0
    epoch: int = 0
    transfer_id: str = ""
    occurred_at: datetime | None = None
    reverses_entry_id: int | None = None
    correction_id: str = ""
    memo: str = ""

    def __post_init__(self) -> None:
        postings = self.postings
        if not self.reference:
            raise LedgerError(Reason.FIELD_INVALID, "an entry needs a reference")
        if type(postings) is BalancedPostings:
            return  # checked when it was made
        if len(postings) < 2:
            raise LedgerError(Reason.ENTRY_UNBALANCED, "an entry needs at least two postings")
        if len({account for account, _ in postings}) != len(postings):
            raise LedgerError(Reason.FIELD_INVALID, "an account appears twice in one entry")
        totals: dict[str, int] = {}
        for account, amount in postings:
            if amount == 0:
                raise LedgerError(Reason.FIELD_INVALID, "a posting's amount must not be zero")
            asset = account[1]
            totals[asset] = totals.get(asset, 0) + amount
        if any(totals.values()):
            raise LedgerError(Reason.ENTRY_UNBALANCED, f"entry {self.reference} does not balance")
