"""The LedgerService over real gRPC (grpc.aio) on a real PostgreSQL: identities, errors
with ErrorInfo, and every RPC family end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from exchange.ledger.types.v1 import types_pb2
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ledger.adjustments import CoreRejectedError
from ledger.domain import EngineBalance
from ledger.service import RunningLedger, start_ledger
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import FakeCore, LedgerDatabase

OPERATOR = (("x-exchange-operator-id", "ops-ann"),)
SECOND_OPERATOR = (("x-exchange-operator-id", "ops-bob"),)
ALICE = (("x-exchange-account-id", "alice"),)


class FakeFunding:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, int]] = []
        self.refuse = False

    async def create_balance_adjustment(
        self,
        *,
        transfer_id: str,
        account_id: str,
        asset: str,
        amount: int,
        memo: str,
        operator_id: str,
    ) -> None:
        self.calls.append((transfer_id, account_id, asset, amount))
        if self.refuse:
            raise CoreRejectedError("INSUFFICIENT_BALANCE", "would go negative")


@pytest.fixture
def funding() -> FakeFunding:
    return FakeFunding()


@pytest.fixture
async def ledger(
    ledger_database: LedgerDatabase, funding: FakeFunding
) -> AsyncIterator[RunningLedger]:
    core = FakeCore({1: [EngineBalance("alice", "USDT", 1_000, 0)]}, engine_seq=1)
    running = await start_ledger(
        database_url=ledger_database.service_url,
        listen="127.0.0.1:0",
        shard_id="shard-1",
        core=core,
        funding=funding,
    )
    yield running
    await running.stop()


@pytest.fixture
async def stub(ledger: RunningLedger) -> AsyncIterator[ledger_pb2_grpc.LedgerServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ledger.port}") as channel:
        yield ledger_pb2_grpc.LedgerServiceStub(channel)


def _reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "exchange"
    return error.code(), info.reason


async def test_ingest_then_balances_for_traders_and_operators(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
) -> None:
    stream = EventStream()
    events = [stream.deposit("alice", "USDT", 1_000), stream.deposit("bob", "BTC", 3)]
    response = await stub.IngestEvents(
        ledger_pb2.IngestEventsRequest(events=events), metadata=OPERATOR
    )
    assert [r.outcome for r in response.results] == [ledger_pb2.INGEST_OUTCOME_POSTED] * 2
    mine = await stub.ListBalances(ledger_pb2.ListBalancesRequest(), metadata=ALICE)
    assert [(b.account.owner_id, b.balance) for b in mine.balances] == [("alice", 1_000)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListBalances(ledger_pb2.ListBalancesRequest(owner_id="bob"), metadata=ALICE)
    assert _reason(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    every = await stub.ListBalances(ledger_pb2.ListBalancesRequest(page_size=2), metadata=OPERATOR)
    rest = await stub.ListBalances(
        ledger_pb2.ListBalancesRequest(page_size=2, page_token=every.next_page_token),
        metadata=OPERATOR,
    )
    assert len(every.balances) + len(rest.balances) == 4
    assert rest.next_page_token == ""


async def test_admin_calls_need_an_operator_and_errors_carry_reasons(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CheckInvariants(ledger_pb2.CheckInvariantsRequest(), metadata=ALICE)
    assert _reason(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_REQUIRED")
    bad = EventStream().reserve("alice", "USDT", -1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IngestEvents(ledger_pb2.IngestEventsRequest(events=[bad]), metadata=OPERATOR)
    assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RecordTradeExecuted(
            ledger_pb2.RecordTradeExecutedRequest(event=EventStream().deposit("a", "USDT", 1)),
            metadata=OPERATOR,
        )
    assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetEntry(ledger_pb2.GetEntryRequest(entry_id="42"), metadata=OPERATOR)
    assert _reason(refused.value) == (grpc.StatusCode.NOT_FOUND, "ENTRY_NOT_FOUND")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListCorrections(
            ledger_pb2.ListCorrectionsRequest(page_token="junk"), metadata=OPERATOR
        )
    assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


async def test_entries_checks_reconciliation_and_a_correction_over_grpc(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
) -> None:
    stream = EventStream()
    posted = await stub.IngestEvents(
        ledger_pb2.IngestEventsRequest(events=[stream.deposit("alice", "USDT", 1_000)]),
        metadata=OPERATOR,
    )
    entry_id = posted.results[0].entry_id
    reserve = await stub.RecordFundsReserved(
        ledger_pb2.RecordFundsReservedRequest(event=stream.reserve("alice", "USDT", 10)),
        metadata=OPERATOR,
    )
    assert reserve.result.outcome == ledger_pb2.INGEST_OUTCOME_POSTED
    entry = (
        await stub.GetEntry(ledger_pb2.GetEntryRequest(entry_id=entry_id), metadata=OPERATOR)
    ).entry
    assert (entry.kind, len(entry.postings)) == (types_pb2.ENTRY_KIND_DEPOSIT, 2)
    listed = await stub.ListEntries(
        ledger_pb2.ListEntriesRequest(owner_id="alice"), metadata=OPERATOR
    )
    assert [e.kind for e in listed.entries] == [
        types_pb2.ENTRY_KIND_RESERVE,
        types_pb2.ENTRY_KIND_DEPOSIT,
    ]
    checked = await stub.CheckInvariants(ledger_pb2.CheckInvariantsRequest(), metadata=OPERATOR)
    assert checked.ok
    report = (
        await stub.GetReconciliation(
            ledger_pb2.GetReconciliationRequest(symbol="-", at_engine_seq=1), metadata=OPERATOR
        )
    ).report
    assert report.status == types_pb2.RECONCILIATION_STATUS_MATCHED
    requested = (
        await stub.RequestCorrection(
            ledger_pb2.RequestCorrectionRequest(
                request_id="r1", reason="double deposit", reverse_entry_id=entry_id
            ),
            metadata=OPERATOR,
        )
    ).correction
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ApproveCorrection(
            ledger_pb2.ApproveCorrectionRequest(correction_id=requested.correction_id),
            metadata=OPERATOR,
        )
    assert _reason(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "CORRECTION_SELF_APPROVAL")
    await stub.ApproveCorrection(
        ledger_pb2.ApproveCorrectionRequest(correction_id=requested.correction_id),
        metadata=SECOND_OPERATOR,
    )
    applied = (
        await stub.ApplyCorrection(
            ledger_pb2.ApplyCorrectionRequest(correction_id=requested.correction_id),
            metadata=OPERATOR,
        )
    ).correction
    assert applied.status == types_pb2.CORRECTION_STATUS_APPLIED
    assert applied.approved_by == "ops-bob"
    listed_corrections = await stub.ListCorrections(
        ledger_pb2.ListCorrectionsRequest(status=types_pb2.CORRECTION_STATUS_APPLIED),
        metadata=OPERATOR,
    )
    assert [c.correction_id for c in listed_corrections.corrections] == [requested.correction_id]
    rebuilt = await stub.RebuildBalances(
        ledger_pb2.RebuildBalancesRequest(dry_run=True), metadata=OPERATOR
    )
    assert list(rebuilt.differences) == []


async def test_adjustments_go_through_the_core_and_post_from_its_event(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub, funding: FakeFunding
) -> None:
    request = ledger_pb2.CreateAdjustmentRequest(
        request_id="adj-7", owner_id="alice", asset="USDT", amount=-5, memo="refund"
    )
    submitted = (await stub.CreateAdjustment(request, metadata=OPERATOR)).adjustment
    assert submitted.status == types_pb2.ADJUSTMENT_STATUS_SUBMITTED
    assert funding.calls == [("adj-7", "alice", "USDT", -5)]
    stream = EventStream()
    await stub.IngestEvents(
        ledger_pb2.IngestEventsRequest(
            events=[
                stream.deposit("alice", "USDT", 100),
                stream.adjust("alice", "USDT", -5, transfer_id="adj-7"),
            ]
        ),
        metadata=OPERATOR,
    )
    posted = (await stub.CreateAdjustment(request, metadata=OPERATOR)).adjustment
    assert (posted.status, posted.entry_id != "") == (types_pb2.ADJUSTMENT_STATUS_POSTED, True)
    assert len(funding.calls) == 1  # posted: not sent again
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateAdjustment(
            ledger_pb2.CreateAdjustmentRequest(
                request_id="adj-7", owner_id="alice", asset="USDT", amount=-6, memo="refund"
            ),
            metadata=OPERATOR,
        )
    assert _reason(refused.value) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    funding.refuse = True
    rejected = (
        await stub.CreateAdjustment(
            ledger_pb2.CreateAdjustmentRequest(
                request_id="adj-8", owner_id="alice", asset="USDT", amount=-(10**9), memo="x"
            ),
            metadata=OPERATOR,
        )
    ).adjustment
    assert (rejected.status, rejected.reject_reason) == (
        types_pb2.ADJUSTMENT_STATUS_REJECTED,
        "INSUFFICIENT_BALANCE",
    )


def _violated_field(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    field: str = bad_request.field_violations[0].field
    return field


async def test_a_nul_in_any_string_is_field_invalid_not_internal(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
) -> None:
    """PostgreSQL text cannot hold NUL: bench/fuzz.py's `GET /v1/admin/entries?owner_id=%00`
    answered 500 INTERNAL. Top-level filters and nested values are refused by name."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListEntries(
            ledger_pb2.ListEntriesRequest(owner_id="#g\x00", reference="x"), metadata=OPERATOR
        )
    assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    assert _violated_field(refused.value) == "owner_id"
    event = EventStream().deposit("alice", "USDT", 5)
    event.event_id = "evt\x00"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IngestEvents(ledger_pb2.IngestEventsRequest(events=[event]), metadata=OPERATOR)
    assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    assert _violated_field(refused.value) == "events.event_id"
    listed = await stub.ListEntries(
        ledger_pb2.ListEntriesRequest(owner_id="alice"), metadata=OPERATOR
    )
    assert list(listed.entries) == []  # the refused event posted nothing
