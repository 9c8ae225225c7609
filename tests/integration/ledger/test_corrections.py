"""Corrections on a real PostgreSQL: two people, idempotent steps, concurrent approvals."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.corrections import Corrections
from ledger.domain import CorrectionStatus
from ledger.errors import LedgerError, Reason
from ledger.journal import available, external
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import LedgerDatabase


@pytest.fixture
def corrections(ledger_engine: AsyncEngine, settlement: Settlement) -> Corrections:
    return Corrections(ledger_engine, settlement.writer)


async def _deposit_entry(settlement: Settlement, amount: int = 100) -> int:
    stream = EventStream()
    [result] = await settlement.post([stream.deposit("alice", "USDT", amount)])
    assert result.entry_id is not None
    return result.entry_id


async def _refused(reason: Reason, call: object) -> None:
    with pytest.raises(LedgerError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.reason is reason


async def test_reversal_needs_a_second_operator_and_applies_once(
    settlement: Settlement, corrections: Corrections, ledger_database: LedgerDatabase
) -> None:
    entry_id = await _deposit_entry(settlement)
    requested = await corrections.request(
        operator_id="ops-ann",
        request_id="r1",
        reason="posted twice upstream",
        reverse_entry_id=entry_id,
    )
    assert requested.status is CorrectionStatus.PENDING_APPROVAL
    await _refused(
        Reason.CORRECTION_NOT_APPROVED,
        corrections.apply(operator_id="ops-ann", correction_id=requested.correction_id),
    )
    await _refused(
        Reason.CORRECTION_SELF_APPROVAL,
        corrections.approve(operator_id="ops-ann", correction_id=requested.correction_id),
    )
    approved = await corrections.approve(
        operator_id="ops-bob", correction_id=requested.correction_id, comment="ok"
    )
    assert (approved.status, approved.approved_by) == (CorrectionStatus.APPROVED, "ops-bob")
    applied = await corrections.apply(operator_id="ops-ann", correction_id=requested.correction_id)
    again = await corrections.apply(operator_id="ops-cid", correction_id=requested.correction_id)
    assert again == applied
    assert applied.status is CorrectionStatus.APPLIED
    assert len(applied.applied_entry_ids) == 1
    assert ledger_database.balances() == {}
    assert ledger_database.count("journal_entries") == 2
    with ledger_database.owner_connection() as connection:
        steps = connection.execute(
            "SELECT step, operator_id FROM correction_steps ORDER BY step_id"
        ).fetchall()
    assert steps == [("REQUESTED", "ops-ann"), ("APPROVED", "ops-bob"), ("APPLIED", "ops-ann")]
    # An entry is reversed once.
    await _refused(
        Reason.CORRECTION_STATE_INVALID,
        corrections.request(
            operator_id="ops-ann", request_id="r2", reason="again", reverse_entry_id=entry_id
        ),
    )


async def test_an_adjusting_correction_must_balance(
    settlement: Settlement, corrections: Corrections, ledger_database: LedgerDatabase
) -> None:
    await _deposit_entry(settlement)
    await _refused(
        Reason.ENTRY_UNBALANCED,
        corrections.request(
            operator_id="ops-ann",
            request_id="r1",
            reason="typo",
            postings=[(available("alice", "USDT"), 5), (external("BTC"), -5)],
        ),
    )
    correction = await corrections.request(
        operator_id="ops-ann",
        request_id="r2",
        reason="fee misposted",
        postings=[(available("alice", "USDT"), -5), (external("USDT"), 5)],
    )
    await corrections.approve(operator_id="ops-bob", correction_id=correction.correction_id)
    await corrections.apply(operator_id="ops-bob", correction_id=correction.correction_id)
    assert ledger_database.balances() == {
        ("alice", "USDT", 1): 95,
        ("exchange:external", "USDT", 4): -95,
    }


async def test_requests_are_idempotent_per_requester(
    settlement: Settlement, corrections: Corrections
) -> None:
    entry_id = await _deposit_entry(settlement)
    first = await corrections.request(
        operator_id="ops-ann", request_id="r1", reason="x", reverse_entry_id=entry_id
    )
    retry = await corrections.request(
        operator_id="ops-ann", request_id="r1", reason="x", reverse_entry_id=entry_id
    )
    assert retry == first
    await _refused(
        Reason.IDEMPOTENCY_KEY_REUSED,
        corrections.request(
            operator_id="ops-ann", request_id="r1", reason="other", reverse_entry_id=entry_id
        ),
    )
    await _refused(
        Reason.ENTRY_NOT_FOUND,
        corrections.request(
            operator_id="ops-ann", request_id="r3", reason="x", reverse_entry_id=entry_id + 99
        ),
    )
    await _refused(
        Reason.OPERATOR_REQUIRED,
        corrections.request(operator_id="", request_id="r4", reason="x", reverse_entry_id=entry_id),
    )
    rejected = await corrections.reject(operator_id="ops-bob", correction_id=first.correction_id)
    assert rejected.status is CorrectionStatus.REJECTED
    await _refused(
        Reason.CORRECTION_STATE_INVALID,
        corrections.apply(operator_id="ops-bob", correction_id=first.correction_id),
    )
    await _refused(Reason.CORRECTION_NOT_FOUND, corrections.get("no-such-correction"))


async def test_concurrent_approvals_and_applies(
    settlement: Settlement, corrections: Corrections, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    results = await settlement.post([stream.deposit("alice", "USDT", 10 + i) for i in range(8)])
    ids = []
    for index, result in enumerate(results):
        assert result.entry_id is not None
        correction = await corrections.request(
            operator_id="ops-ann",
            request_id=f"r{index}",
            reason="bulk fix",
            reverse_entry_id=result.entry_id,
        )
        ids.append(correction.correction_id)
    outcomes = await asyncio.gather(
        *(
            corrections.approve(operator_id=operator, correction_id=correction_id)
            for correction_id in ids
            for operator in ("ops-bob", "ops-cid", "ops-dan")
        ),
        return_exceptions=True,
    )
    for index in range(len(ids)):
        trio = outcomes[3 * index : 3 * index + 3]
        winners = [o for o in trio if not isinstance(o, BaseException)]
        losers = [o for o in trio if isinstance(o, LedgerError)]
        assert len(winners) == 1
        assert [loser.reason for loser in losers] == [Reason.CORRECTION_STATE_INVALID] * 2
    applied = await asyncio.gather(
        *(
            corrections.apply(operator_id=operator, correction_id=correction_id)
            for correction_id in ids
            for operator in ("ops-bob", "ops-cid")
        )
    )
    assert all(a.status is CorrectionStatus.APPLIED for a in applied)
    assert ledger_database.count("journal_entries") == 16
    assert ledger_database.balances() == {}


def test_the_database_refuses_self_approval_too(ledger_database: LedgerDatabase) -> None:
    with (
        ledger_database.service_connection() as connection,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        connection.execute(
            "INSERT INTO corrections (correction_id, request_id, status, reason, "
            "proposed_postings, requested_by, approved_by) "
            "VALUES ('c', 'r', 2, 'x', '[]', 'ops-ann', 'ops-ann')"
        )
