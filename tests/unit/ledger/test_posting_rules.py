"""Posting rules without a database: each core event's entry, and refusals by name."""

from __future__ import annotations

import pytest
from exchange.common.v1 import types_pb2 as common_pb2
from exchange.events.v1 import core_events_pb2, envelope_pb2
from google.rpc import code_pb2
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import LedgerError, Reason
from ledger.journal import (
    AccountKey,
    AccountKind,
    EntryKind,
    PlannedEntry,
    Posting,
    balanced_postings,
    external,
    fees,
)
from ledger.posting_rules import plan_entry, read_header
from ledger.testing import EventStream


def _plan(envelope: envelope_pb2.EventEnvelope) -> PlannedEntry | None:
    return plan_entry(envelope, read_header(envelope))


def _legs(entry: PlannedEntry | None) -> dict[tuple[str, str, AccountKind], int]:
    assert entry is not None
    return {(p.account.owner_id, p.account.asset, p.account.kind): p.amount for p in entry.postings}


A, H, F, X = AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.FEES, AccountKind.EXTERNAL


def test_reserve_and_release_move_between_available_and_held() -> None:
    stream = EventStream()
    reserve = _plan(stream.reserve("alice", "USDT", 70))
    release = _plan(stream.release("alice", "USDT", 20))
    assert _legs(reserve) == {("alice", "USDT", A): -70, ("alice", "USDT", H): 70}
    assert _legs(release) == {("alice", "USDT", H): -20, ("alice", "USDT", A): 20}
    assert reserve is not None
    assert reserve.kind is EntryKind.RESERVE
    assert reserve.reference == "shard-1:1:0"


def test_funding_moves_against_the_external_account() -> None:
    stream = EventStream()
    assert _legs(_plan(stream.deposit("alice", "BTC", 5))) == {
        ("alice", "BTC", A): 5,
        ("exchange:external", "BTC", X): -5,
    }
    assert _legs(_plan(stream.withdraw("alice", "BTC", 3))) == {
        ("alice", "BTC", A): -3,
        ("exchange:external", "BTC", X): 3,
    }
    adjustment = _plan(stream.adjust("alice", "BTC", -2, transfer_id="adj-1"))
    assert _legs(adjustment) == {("alice", "BTC", A): -2, ("exchange:external", "BTC", X): 2}
    assert adjustment is not None
    assert adjustment.transfer_id == "adj-1"


@pytest.mark.parametrize("taker_side", [common_pb2.SIDE_BUY, common_pb2.SIDE_SELL])
def test_a_trade_pays_each_side_and_the_fees_in_one_entry(taker_side: int) -> None:
    entry = _plan(
        EventStream().trade(
            buyer="alice",
            seller="bob",
            quantity=10,
            notional=1_000,
            buyer_fee=3,
            seller_fee=2,
            taker_side=taker_side,
        )
    )
    assert _legs(entry) == {
        ("alice", "USDT", H): -1_003,
        ("bob", "USDT", A): 998,
        ("exchange:fees", "USDT", F): 5,
        ("bob", "BTC", H): -10,
        ("alice", "BTC", A): 10,
    }
    assert entry is not None
    assert entry.kind is EntryKind.TRADE
    assert entry.reference == "shard-1:1"


def test_events_that_move_no_money_post_nothing() -> None:
    assert _plan(EventStream().order_accepted("alice")) is None


def _broken(**changes: object) -> envelope_pb2.EventEnvelope:
    envelope = EventStream().deposit("alice", "USDT", 10)
    for name, value in changes.items():
        setattr(envelope, name, value)
    return envelope


@pytest.mark.parametrize(
    "envelope",
    [
        _broken(event_id=""),
        _broken(event_version=2),
        _broken(producer=envelope_pb2.PRODUCER_LEDGER),
        _broken(shard_id=""),
        _broken(seq=0),
        EventStream().envelope(
            "",
            funds_deposited=core_events_pb2.FundsDeposited(
                account_id="alice", asset="USDT", amount=0
            ),
        ),
        EventStream().envelope(
            "", funds_reserved=core_events_pb2.FundsReserved(account_id="", asset="USDT", amount=5)
        ),
        EventStream().envelope(
            "",
            balance_adjusted=core_events_pb2.BalanceAdjusted(
                account_id="a", asset="USDT", amount=0
            ),
        ),
        EventStream().trade(buyer="a", seller="b", quantity=0, notional=5),
        EventStream().trade(buyer="a", seller="b", quantity=1, notional=5, buyer_fee=-1),
        EventStream().trade(buyer="a", seller="b", quantity=1, notional=5, taker_side=0),
        EventStream().trade(buyer="a", seller="b", quantity=1, notional=5, base_asset="USDT"),
        EventStream().envelope("", entry_posted=envelope_pb2.EventEnvelope().entry_posted),
        EventStream().envelope(""),
    ],
    ids=lambda envelope: envelope.WhichOneof("payload") or "no payload",
)
def test_malformed_events_are_refused_by_name(envelope: envelope_pb2.EventEnvelope) -> None:
    with pytest.raises(LedgerError) as refused:
        _plan(envelope)
    assert refused.value.reason is Reason.FIELD_INVALID
    assert refused.value.metadata["event_id"] == envelope.event_id


def test_postings_must_balance_per_asset() -> None:
    usdt = AccountKey("a", "USDT", A)
    with pytest.raises(LedgerError) as refused:
        balanced_postings([(usdt, 5), (external("BTC"), -5)])
    assert refused.value.reason is Reason.ENTRY_UNBALANCED
    with pytest.raises(LedgerError):
        balanced_postings([(usdt, 0), (external("USDT"), 0)])
    merged = balanced_postings([(usdt, 5), (fees("USDT"), 1), (usdt, -6), (fees("USDT"), 0)])
    assert merged == (Posting(usdt, -1), Posting(fees("USDT"), 1))
    with pytest.raises(LedgerError):
        balanced_postings([(usdt, 2**63), (external("USDT"), -(2**63))])


_TWO_LEG_ACCOUNTS = [
    AccountKey("a", "USDT", A),
    AccountKey("a", "USDT", H),
    AccountKey("b", "USDT", A),
    AccountKey("a", "BTC", A),
]
_EDGE_AMOUNTS = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63 - 1), -(2**63), 2**63])


def _outcome(legs: list[tuple[AccountKey, int]]) -> object:
    try:
        return balanced_postings(legs)
    except LedgerError as refused:
        return refused.reason


@given(
    first=st.sampled_from(_TWO_LEG_ACCOUNTS),
    second=st.sampled_from(_TWO_LEG_ACCOUNTS),
    amount=st.integers(-(2**64), 2**64) | _EDGE_AMOUNTS | st.booleans(),
    opposite=st.integers(-(2**64), 2**64) | _EDGE_AMOUNTS | st.booleans(),
    negate=st.booleans(),
)
def test_two_legs_are_judged_as_any_other_legs(
    first: AccountKey, second: AccountKey, amount: int, opposite: int, *, negate: bool
) -> None:
    """Two legs take a shortcut (a reservation's, a release's); adding a zero leg on a third
    account takes the general way and must not change the outcome, postings or refusal."""
    if negate:
        opposite = -amount
    two = _outcome([(first, amount), (second, opposite)])
    general = _outcome([(first, amount), (second, opposite), (external("ETH"), 0)])
    assert two == general
    if isinstance(two, tuple):
        entry = PlannedEntry(EntryKind.RESERVE, "r", two)  # trusted: not checked again
        assert entry.postings == two


def test_an_entry_of_plain_postings_is_still_checked() -> None:
    usdt = AccountKey("a", "USDT", A)
    with pytest.raises(LedgerError) as refused:
        PlannedEntry(EntryKind.RESERVE, "r", (Posting(usdt, 5), Posting(external("USDT"), -4)))
    assert refused.value.reason is Reason.ENTRY_UNBALANCED


def test_every_reason_exists_in_the_contract_with_its_code() -> None:
    codes = {reason: code_pb2.Code.Name(reason.status_code) for reason in Reason}
    assert codes[Reason.CORRECTION_SELF_APPROVAL] == "PERMISSION_DENIED"
    assert codes[Reason.ENTRY_UNBALANCED] == "INVALID_ARGUMENT"
    assert codes[Reason.ENTRY_NOT_FOUND] == "NOT_FOUND"
