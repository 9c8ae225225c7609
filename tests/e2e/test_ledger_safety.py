"""The ledger's safety path on the real local exchange, after a trade made with the SDK:

- duplicate delivery: every event of `core.events.v1` published again on the stack's broker,
  and a batch given twice to `IngestEvents` by an operator, post nothing: entries and
  balances stay as they were (a later deposit proves the ledger read past the duplicates);
- a correction (an adjusting entry) requested by one operator is refused when the same
  operator approves it (CORRECTION_SELF_APPROVAL), approved by a second operator, applied,
  applied again without a second entry; balances move exactly by its postings, the
  invariants hold, and reconciliation with the core shows exactly that difference."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from exchange.events.v1 import envelope_pb2
from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from exchange_sdk import OrderStatus, Side
from exchange_sdk.errors import from_rpc_error

from infra.local.components import CORE_SHARD_ID
from tests.support.exchange_access import (
    MARKER_ACCOUNT,
    client,
    deposit,
    invariant_violations,
    ledger,
    ledger_balances,
    operator,
    settled_reconciliation,
    topic_envelopes,
)
from tests.support.local_stack import StackCommand

CORE_EVENTS_TOPIC = "core.events.v1"
FEES_OWNER = "exchange:fees"
EXTERNAL_OWNER = "exchange:external"
SECOND_OPERATOR = "e2e-second-operator"
AVAILABLE = ledger_types_pb2.ACCOUNT_KIND_AVAILABLE
EXTERNAL = ledger_types_pb2.ACCOUNT_KIND_EXTERNAL
CORRECTION_AMOUNT = 7 * 10**6  # 7 USDT


def _all_entries(
    service: ledger_pb2_grpc.LedgerServiceStub,
) -> dict[str, ledger_types_pb2.JournalEntry]:
    entries: dict[str, ledger_types_pb2.JournalEntry] = {}
    page_token = ""
    while True:
        answer = service.ListEntries(
            ledger_pb2.ListEntriesRequest(page_size=1000, page_token=page_token),
            metadata=operator(),
            timeout=10,
        )
        entries.update((entry.entry_id, entry) for entry in answer.entries)
        page_token = answer.next_page_token
        if not page_token:
            return entries


def _books(stack: StackCommand, owners: list[str]) -> dict[str, dict[tuple[str, int], int]]:
    return {owner: ledger_balances(stack, owner) for owner in owners}


async def _publish_again(
    bootstrap_servers: str, envelopes: Sequence[envelope_pb2.EventEnvelope]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(
                CORE_EVENTS_TOPIC,
                envelope.SerializeToString(),
                key=CORE_SHARD_ID.encode(),
                partition=0,
            )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def traded(stack: StackCommand) -> StackCommand:
    """A trade between the demo accounts, settled by the ledger."""
    keys = stack.keys()
    with client(stack, keys["demo-alice"]) as alice, client(stack, keys["demo-bob"]) as bob:
        alice.place_order("ETH-USDT", Side.SELL, Decimal("0.5"), price=Decimal("3000"))
        bought = bob.place_order(
            "ETH-USDT", Side.BUY, Decimal("0.5"), price=Decimal("3000"), time_in_force="ioc"
        )
        assert bought.order.status is OrderStatus.FILLED
    report = settled_reconciliation(stack)
    assert report.status == ledger_types_pb2.RECONCILIATION_STATUS_MATCHED, report
    return stack


def test_duplicate_delivery_changes_nothing(traded: StackCommand) -> None:
    stack = traded
    keys = stack.keys()
    owners = [keys["demo-alice"].account_id, keys["demo-bob"].account_id, FEES_OWNER]
    with ledger(stack) as service:
        entries_before = _all_entries(service)
    books_before = _books(stack, owners)
    delivered = asyncio.run(topic_envelopes(stack.broker_address, CORE_EVENTS_TOPIC))
    trades = [envelope for envelope in delivered if envelope.HasField("trade_executed")]
    assert trades, "the trade's event is on the topic"

    # The same events twice through IngestEvents (an operator's replay): all duplicates.
    batch = [envelope for envelope in delivered if envelope.engine_seq >= trades[0].engine_seq]
    with ledger(stack) as service:
        for _ in range(2):
            answer = service.IngestEvents(
                ledger_pb2.IngestEventsRequest(events=batch), metadata=operator(), timeout=30
            )
            outcomes = {result.outcome for result in answer.results}
            assert outcomes <= {
                ledger_pb2.INGEST_OUTCOME_DUPLICATE,
                ledger_pb2.INGEST_OUTCOME_NO_POSTING,
            }, answer
            trade_results = [
                result for result in answer.results if result.event_id == trades[0].event_id
            ]
            assert trade_results[0].outcome == ledger_pb2.INGEST_OUTCOME_DUPLICATE
            assert trade_results[0].entry_id in entries_before

    # Every event of the topic delivered again by the broker, then one new deposit.
    asyncio.run(_publish_again(stack.broker_address, delivered))
    deposit(stack, MARKER_ACCOUNT, f"e2e-marker-{time.time_ns()}", 1)  # after the duplicates
    report = settled_reconciliation(stack)
    assert report.status == ledger_types_pb2.RECONCILIATION_STATUS_MATCHED, report

    with ledger(stack) as service:
        entries_after = _all_entries(service)
    new_entries = [
        entry for entry_id, entry in entries_after.items() if entry_id not in entries_before
    ]
    assert [entry.kind for entry in new_entries] == [ledger_types_pb2.ENTRY_KIND_DEPOSIT]  # marker
    assert _books(stack, owners) == books_before
    assert invariant_violations(stack) == []


def test_correction_needs_a_second_operator_and_applies_once(traded: StackCommand) -> None:
    stack = traded
    alice = stack.keys()["demo-alice"].account_id
    owners = [alice, EXTERNAL_OWNER]
    books_before = _books(stack, owners)
    postings = [
        ledger_types_pb2.Posting(
            account=ledger_types_pb2.LedgerAccount(owner_id=alice, asset="USDT", kind=AVAILABLE),
            amount=CORRECTION_AMOUNT,
        ),
        ledger_types_pb2.Posting(
            account=ledger_types_pb2.LedgerAccount(
                owner_id=EXTERNAL_OWNER, asset="USDT", kind=EXTERNAL
            ),
            amount=-CORRECTION_AMOUNT,
        ),
    ]
    request = ledger_pb2.RequestCorrectionRequest(
        request_id="e2e-correction-1",
        reason="e2e: a deposit the ledger missed",
        adjustment=ledger_types_pb2.CorrectionAdjustment(postings=postings),
    )
    with ledger(stack) as service:
        requested = service.RequestCorrection(request, metadata=operator(), timeout=10).correction
        assert requested.status == ledger_types_pb2.CORRECTION_STATUS_PENDING_APPROVAL
        again = service.RequestCorrection(request, metadata=operator(), timeout=10).correction
        assert again.correction_id == requested.correction_id  # idempotent per request_id
        approve = ledger_pb2.ApproveCorrectionRequest(
            correction_id=requested.correction_id, comment="e2e"
        )

        with pytest.raises(grpc.RpcError) as refused:
            service.ApproveCorrection(approve, metadata=operator(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert from_rpc_error(refused.value).reason == "CORRECTION_SELF_APPROVAL"
        assert _books(stack, owners) == books_before  # nothing applied before approval

        approved = service.ApproveCorrection(
            approve, metadata=operator(SECOND_OPERATOR), timeout=10
        ).correction
        assert approved.status == ledger_types_pb2.CORRECTION_STATUS_APPROVED
        assert approved.approved_by == SECOND_OPERATOR
        assert approved.requested_by != approved.approved_by
        assert _books(stack, owners) == books_before  # approved, not applied yet

        apply = ledger_pb2.ApplyCorrectionRequest(correction_id=requested.correction_id)
        applied = service.ApplyCorrection(apply, metadata=operator(), timeout=10).correction
        assert applied.status == ledger_types_pb2.CORRECTION_STATUS_APPLIED
        assert len(applied.applied_entry_ids) == 1
        entries_after_apply = _all_entries(service)
        applied_again = service.ApplyCorrection(apply, metadata=operator(), timeout=10).correction
        assert applied_again == applied  # a no-op: the applied correction, no second entry
        assert _all_entries(service) == entries_after_apply

    expected = {owner: dict(balances) for owner, balances in books_before.items()}
    for posting in postings:
        account = (posting.account.asset, posting.account.kind)
        owner = expected[posting.account.owner_id]
        owner[account] = owner.get(account, 0) + posting.amount
    assert _books(stack, owners) == expected
    assert invariant_violations(stack) == []
    # The ledger now differs from the core by exactly the correction (corrections fix the
    # ledger's own mistakes; this one was made up, so reconciliation reports it).
    report = settled_reconciliation(stack)
    assert report.status == ledger_types_pb2.RECONCILIATION_STATUS_DIFFERENCES
    differences = {
        (difference.account.owner_id, difference.account.asset, difference.account.kind): (
            difference.actual - difference.expected
        )
        for difference in report.differences
    }
    assert differences == {
        (alice, "USDT", AVAILABLE): CORRECTION_AMOUNT,
        (EXTERNAL_OWNER, "USDT", EXTERNAL): -CORRECTION_AMOUNT,
    }, report
    assert not report.gaps
