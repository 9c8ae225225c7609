"""Posting rules: one core event (an `EventEnvelope`) -> at most one journal entry. Pure.

| payload | entry kind | postings (signed minor units) |
|---|---|---|
| FundsReserved(a, asset, x) | RESERVE | a.available -x, a.held +x |
| FundsReleased(a, asset, x) | RELEASE | a.held -x, a.available +x |
| TradeExecuted | TRADE | see below |
| FundsDeposited(a, asset, x) | DEPOSIT | a.available +x, external(asset) -x |
| FundsWithdrawn(a, asset, x) | WITHDRAWAL | a.available -x, external(asset) +x |
| BalanceAdjusted(a, asset, d) | ADJUSTMENT | a.available +d, external(asset) -d |
| every other core event | none | (NO_POSTING: only its sequence number is recorded) |

A trade (notional = quote_quantity, exact): buyer.held(quote) -(notional + buyer fee),
seller.available(quote) +(notional - seller fee), fees(quote) +(maker fee + taker fee),
seller.held(base) -quantity, buyer.available(base) +quantity.

These are exactly the engine's balance moves (core/engine/matching.py, fees.py): a fill
takes its cost out of the orders' held balances and credits the counterparties' available
balances; both fees go to the fee account `exchange:fees`, whose balance is its FEES account
here. The
taker pays the taker fee, the maker the maker fee; the buyer pays notional + its fee, the
seller receives notional - its fee.

An entry's reference is `<shard_id>:<trade_id>` for trades (a trade settles once, whatever
event id carries it; trade ids are a per-shard counter of the engine, so the shard scopes
them) and the event id otherwise (event ids already start with the shard). Anything
malformed is refused with a named error (`LedgerError`), never posted partly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from exchange.common.v1 import types_pb2 as common_pb2
from exchange.events.v1 import envelope_pb2

from ledger.errors import LedgerError, Reason
from ledger.journal import (
    AccountKey,
    EntryKind,
    PlannedEntry,
    available,
    balanced_postings,
    external,
    fees,
    held,
)

SUPPORTED_EVENT_VERSION: Final = 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Core payloads that move no money: their sequence numbers are tracked, nothing is posted.
NO_POSTING_PAYLOADS: Final = frozenset(
    {
        "order_accepted",
        "order_rejected",
        "order_amended",
        "order_cancelled",
        "order_expired",
        "asset_created",
        "market_created",
        "market_mode_changed",
        "snapshot_taken",
        "engine_epoch_started",
    }
)
POSTING_PAYLOADS: Final = frozenset(
    {
        "trade_executed",
        "funds_reserved",
        "funds_released",
        "funds_deposited",
        "funds_withdrawn",
        "balance_adjusted",
    }
)


CORE_PAYLOADS: Final = POSTING_PAYLOADS | NO_POSTING_PAYLOADS


class EventHeader(NamedTuple):
    """The envelope fields settlement needs, validated (a tuple: built once per event on
    the settlement hot path)."""

    event_id: str
    shard_id: str
    symbol: str
    seq: int
    epoch: int
    engine_seq: int
    payload: str


def _invalid(envelope: envelope_pb2.EventEnvelope, message: str) -> LedgerError:
    return LedgerError(
        Reason.FIELD_INVALID, f"event {envelope.event_id!r}: {message}", event_id=envelope.event_id
    )


def read_header(envelope: envelope_pb2.EventEnvelope) -> EventHeader:
    """Validate the envelope of a core event; refuse versions and payloads it does not know."""
    event_id, shard_id, seq = envelope.event_id, envelope.shard_id, envelope.seq
    if not event_id:
        raise _invalid(envelope, "event_id is empty")
    if envelope.event_version != SUPPORTED_EVENT_VERSION:
        raise _invalid(envelope, f"event_version {envelope.event_version} is not supported")
    if envelope.producer != envelope_pb2.PRODUCER_CORE:
        raise _invalid(envelope, "the ledger settles core events only")
    if not shard_id:
        raise _invalid(envelope, "shard_id is empty")
    if seq < 1:
        raise _invalid(envelope, "seq must start at 1")
    payload = envelope.WhichOneof("payload")
    if payload not in CORE_PAYLOADS:
        raise _invalid(envelope, f"payload {payload!r} is not a core event")
    return EventHeader(
        event_id, shard_id, envelope.symbol, seq, envelope.epoch, envelope.engine_seq, payload
    )


def _occurred_at(envelope: envelope_pb2.EventEnvelope) -> datetime | None:
    """When the core says the event happened (only events that post need it)."""
    if not envelope.HasField("occurred_at"):
        return None
    # What Timestamp.ToDatetime(tzinfo=UTC) computes, without its per-call checks.
    timestamp = envelope.occurred_at
    return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000)


def _require(envelope: envelope_pb2.EventEnvelope, *, condition: bool, message: str) -> None:
    if not condition:
        raise _invalid(envelope, message)


def _funds_legs(
    envelope: envelope_pb2.EventEnvelope, header: EventHeader
) -> tuple[EntryKind, list[tuple[AccountKey, int]], str, str]:
    """(kind, legs, transfer id, memo) of a reservation, release or funding event."""
    payload = getattr(envelope, header.payload)
    account_id: str = payload.account_id
    asset: str = payload.asset
    amount: int = payload.amount
    _require(
        envelope,
        condition=bool(account_id) and bool(asset),
        message="account_id and asset are required",
    )
    if header.payload == "balance_adjusted":
        _require(envelope, condition=amount != 0, message="an adjustment's amount must not be zero")
        legs = [(available(account_id, asset), amount), (external(asset), -amount)]
        return EntryKind.ADJUSTMENT, legs, payload.transfer_id, payload.memo
    _require(envelope, condition=amount > 0, message="amount must be positive")
    if header.payload == "funds_reserved":
        legs = [(available(account_id, asset), -amount), (held(account_id, asset), amount)]
        return EntryKind.RESERVE, legs, "", ""
    if header.payload == "funds_released":
        legs = [(held(account_id, asset), -amount), (available(account_id, asset), amount)]
        return EntryKind.RELEASE, legs, "", ""
    if header.payload == "funds_deposited":
        legs = [(available(account_id, asset), amount), (external(asset), -amount)]
        return EntryKind.DEPOSIT, legs, payload.transfer_id, payload.reference
    legs = [(available(account_id, asset), -amount), (external(asset), amount)]
    return EntryKind.WITHDRAWAL, legs, payload.transfer_id, payload.reference


def _trade_legs(envelope: envelope_pb2.EventEnvelope) -> list[tuple[AccountKey, int]]:
    trade = envelope.trade_executed
    _require(envelope, condition=bool(trade.trade_id), message="trade_id is required")
    _require(
        envelope,
        condition=bool(trade.base_asset and trade.quote_asset),
        message="assets are required",
    )
    _require(
        envelope,
        condition=trade.base_asset != trade.quote_asset,
        message="base and quote must differ",
    )
    _require(
        envelope,
        condition=bool(trade.maker_account_id and trade.taker_account_id),
        message="accounts are required",
    )
    _require(
        envelope,
        condition=trade.quantity > 0 and trade.quote_quantity > 0,
        message="amounts must be positive",
    )
    _require(
        envelope,
        condition=trade.maker_fee >= 0 and trade.taker_fee >= 0,
        message="fees must not be negative",
    )
    if trade.taker_side == common_pb2.SIDE_BUY:
        buyer, seller = trade.taker_account_id, trade.maker_account_id
        buyer_fee, seller_fee = trade.taker_fee, trade.maker_fee
    elif trade.taker_side == common_pb2.SIDE_SELL:
        buyer, seller = trade.maker_account_id, trade.taker_account_id
        buyer_fee, seller_fee = trade.maker_fee, trade.taker_fee
    else:
        raise _invalid(envelope, "taker_side must be BUY or SELL")
    base, quote, notional = trade.base_asset, trade.quote_asset, trade.quote_quantity
    return [
        (held(buyer, quote), -(notional + buyer_fee)),
        (available(seller, quote), notional - seller_fee),
        (fees(quote), buyer_fee + seller_fee),
        (held(seller, base), -trade.quantity),
        (available(buyer, base), trade.quantity),
    ]


def trade_reference(shard_id: str, trade_id: str) -> str:
    """The unique reference of a trade's entry."""
    return f"{shard_id}:{trade_id}"


def plan_entry(envelope: envelope_pb2.EventEnvelope, header: EventHeader) -> PlannedEntry | None:
    """The entry an event posts, or None for an event that moves no money."""
    if header.payload in NO_POSTING_PAYLOADS:
        return None
    transfer_id = memo = ""
    if header.payload == "trade_executed":
        kind, legs = EntryKind.TRADE, _trade_legs(envelope)
        reference = trade_reference(header.shard_id, envelope.trade_executed.trade_id)
    else:
        kind, legs, transfer_id, memo = _funds_legs(envelope, header)
        reference = header.event_id
    try:
        postings = balanced_postings(legs)
    except LedgerError as error:
        raise _invalid(envelope, error.message) from error
    return PlannedEntry(
        kind=kind,
        reference=reference,
        postings=postings,
        source_event_id=header.event_id,
        shard_id=header.shard_id,
        symbol=header.symbol,
        seq=header.seq,
        engine_seq=header.engine_seq,
        epoch=header.epoch,
        transfer_id=transfer_id,
        occurred_at=_occurred_at(envelope),
        memo=memo,
    )


def plan_events(
    envelopes: Sequence[envelope_pb2.EventEnvelope],
) -> tuple[list[EventHeader], list[PlannedEntry | None]]:
    """Each event's validated header and its entry (None: moves no money), in order.
    Raises `LedgerError` for the first malformed event."""
    headers = [read_header(envelope) for envelope in envelopes]
    plans = [
        plan_entry(envelope, header) for envelope, header in zip(envelopes, headers, strict=True)
    ]
    return headers, plans
