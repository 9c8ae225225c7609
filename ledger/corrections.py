"""Corrections: request -> approval by a second operator -> apply (new entries), audited.

Rules:
- a request names a reason and exactly one proposal: reverse one entry (post its mirror
  image, kind REVERSAL) or post balanced postings (kind CORRECTION); `request_id` makes it
  idempotent per requester (same body: the original; other body: IDEMPOTENCY_KEY_REUSED);
- only another operator may approve (CORRECTION_SELF_APPROVAL; the database's CHECK refuses
  it too); approvals are serialized on the correction's row, so of two concurrent approvals
  exactly one wins and the other fails CORRECTION_STATE_INVALID (a retry by the winner
  returns the approved correction);
- apply posts the entries in the same transaction as the status change; applying again
  returns the applied correction and posts nothing (the entries' reference is the
  correction id, unique per kind); an entry can be reversed only once;
- every step is a row in `correction_steps` (append-only): who, when, comment; and an event
  of `ledger.events.v1` (CorrectionRequested/Approved/Rejected/Applied, plus EntryPosted for
  the applied entry) recorded in the outbox in the same transaction.
Corrections fix the ledger's own mistakes (docs/adr/0005): they never move a customer's money
the core does not know about; money that must move goes through the core as an adjustment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db.connection import DriverConnection, driver_connection
from ledger.db.journal_writer import JournalWriter
from ledger.domain import Correction, CorrectionStatus
from ledger.errors import LedgerError, Reason
from ledger.events_outbox import correction_step, record_entry_batch, record_events
from ledger.journal import (
    AccountKey,
    AccountKind,
    EntryKind,
    PlannedEntry,
    Posting,
    balanced_postings,
)
from ledger.paging import decode_page_token, encode_page_token, page_size_or_default

PAGE_SIZE_DEFAULT: Final = 100
PAGE_SIZE_MAX: Final = 500


_COLUMNS = (
    "correction_id, status, reason, reverse_entry_id, proposed_postings, requested_by, "
    "requested_at, approved_by, approved_at, applied_by, applied_at, rejected_by, rejected_at, "
    "applied_entry_ids"
)


def _postings_to_json(postings: Sequence[Posting]) -> str:
    return json.dumps(
        [
            {
                "owner_id": p.account.owner_id,
                "asset": p.account.asset,
                "kind": int(p.account.kind),
                "amount": p.amount,
            }
            for p in postings
        ]
    )


def _postings_from_json(value: Any) -> tuple[Posting, ...]:
    return tuple(
        Posting(
            AccountKey(item["owner_id"], item["asset"], AccountKind(item["kind"])),
            int(item["amount"]),
        )
        for item in value
    )


def _correction(row: Sequence[Any]) -> Correction:
    return Correction(
        correction_id=row[0],
        status=CorrectionStatus(row[1]),
        reason=row[2],
        reverse_entry_id=row[3],
        postings=None if row[4] is None else _postings_from_json(row[4]),
        requested_by=row[5],
        requested_at=row[6],
        approved_by=row[7],
        approved_at=row[8],
        applied_by=row[9],
        applied_at=row[10],
        rejected_by=row[11],
        rejected_at=row[12],
        applied_entry_ids=tuple(row[13]),
    )


def _require_operator(operator_id: str) -> None:
    if not operator_id:
        raise LedgerError(Reason.OPERATOR_REQUIRED, "an operator identity is required")


class Corrections:
    """The two-person correction workflow on the journal."""

    def __init__(self, engine: AsyncEngine, writer: JournalWriter) -> None:
        self._engine = engine
        self._writer = writer

    async def request(
        self,
        *,
        operator_id: str,
        request_id: str,
        reason: str,
        reverse_entry_id: int | None = None,
        postings: Sequence[tuple[AccountKey, int]] | None = None,
    ) -> Correction:
        _require_operator(operator_id)
        if not request_id:
            raise LedgerError(Reason.IDEMPOTENCY_KEY_MISSING, "request_id is required")
        if not reason.strip():
            raise LedgerError(Reason.FIELD_INVALID, "a correction needs a reason", field="reason")
        if (reverse_entry_id is None) == (postings is None):
            raise LedgerError(
                Reason.FIELD_INVALID,
                "propose either an entry to reverse or postings",
                field="proposal",
            )
        proposed = None if postings is None else balanced_postings(list(postings))
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            if reverse_entry_id is not None:
                await _check_reversible(connection, reverse_entry_id)
            cursor = await connection.execute(
                "INSERT INTO corrections (correction_id, request_id, status, reason, "
                "reverse_entry_id, proposed_postings, requested_by) VALUES "
                "(%s, %s, %s, %s, %s, %s::jsonb, %s) "
                "ON CONFLICT (requested_by, request_id) DO NOTHING RETURNING correction_id",
                (
                    str(uuid.uuid4()),
                    request_id,
                    int(CorrectionStatus.PENDING_APPROVAL),
                    reason,
                    reverse_entry_id,
                    None if proposed is None else _postings_to_json(proposed),
                    operator_id,
                ),
            )
            row = await cursor.fetchone()
            if row is not None:
                await _record_step(connection, row[0], "REQUESTED", operator_id, reason)
                requested = await _load(connection, row[0])
                await record_events(connection, [correction_step("REQUESTED", requested)])
                return requested
            cursor = await connection.execute(
                "SELECT correction_id FROM corrections WHERE requested_by = %s AND request_id = %s",
                (operator_id, request_id),
            )
            existing_row = await cursor.fetchone()
            if existing_row is None:
                raise LedgerError(Reason.INTERNAL, "a conflicting request vanished")
            existing = await _load(connection, existing_row[0])
        if (existing.reason, existing.reverse_entry_id, existing.postings) != (
            reason,
            reverse_entry_id,
            proposed,
        ):
            raise LedgerError(
                Reason.IDEMPOTENCY_KEY_REUSED,
                f"request_id {request_id!r} was used for another correction",
                correction_id=existing.correction_id,
            )
        return existing

    async def approve(
        self, *, operator_id: str, correction_id: str, comment: str = ""
    ) -> Correction:
        _require_operator(operator_id)
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            correction = await _load(connection, correction_id, for_update=True)
            if correction.requested_by == operator_id:
                raise LedgerError(
                    Reason.CORRECTION_SELF_APPROVAL,
                    "a correction must be approved by another operator than its requester",
                    correction_id=correction_id,
                )
            if correction.status is not CorrectionStatus.PENDING_APPROVAL:
                if correction.approved_by == operator_id:
                    return correction  # a retry of this operator's approval
                raise _state_invalid(correction, "approve")
            return await _decide(
                connection, correction_id, CorrectionStatus.APPROVED, operator_id, comment
            )

    async def reject(
        self, *, operator_id: str, correction_id: str, comment: str = ""
    ) -> Correction:
        _require_operator(operator_id)
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            correction = await _load(connection, correction_id, for_update=True)
            if correction.status is CorrectionStatus.REJECTED and (
                correction.rejected_by == operator_id
            ):
                return correction
            if correction.status is not CorrectionStatus.PENDING_APPROVAL:
                raise _state_invalid(correction, "reject")
            return await _decide(
                connection, correction_id, CorrectionStatus.REJECTED, operator_id, comment
            )

    async def apply(self, *, operator_id: str, correction_id: str) -> Correction:
        _require_operator(operator_id)
        new_accounts: dict[AccountKey, int] = {}
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            correction = await _load(connection, correction_id, for_update=True)
            if correction.status is CorrectionStatus.APPLIED:
                return correction  # applying twice posts nothing the second time
            if correction.status is CorrectionStatus.PENDING_APPROVAL:
                raise LedgerError(
                    Reason.CORRECTION_NOT_APPROVED,
                    "the correction is not approved yet",
                    correction_id=correction_id,
                )
            if correction.status is not CorrectionStatus.APPROVED:
                raise _state_invalid(correction, "apply")
            entry = await _planned_entry(connection, correction)
            written = await self._writer.write(connection, [entry])
            new_accounts = written.new_account_ids
            entry_id = written.inserted.get((entry.kind, entry.reference))
            if entry_id is None:
                raise LedgerError(Reason.INTERNAL, "the correction's entry exists already")
            await connection.execute(
                "UPDATE corrections SET status = %s, applied_by = %s, applied_at = now(), "
                "applied_entry_ids = %s WHERE correction_id = %s",
                (int(CorrectionStatus.APPLIED), operator_id, [entry_id], correction_id),
            )
            await _record_step(connection, correction_id, "APPLIED", operator_id, "")
            applied = await _load(connection, correction_id)
            await record_entry_batch(connection, [entry_id])
            await record_events(connection, [correction_step("APPLIED", applied)])
        self._writer.remember_accounts(new_accounts)
        return applied

    async def get(self, correction_id: str) -> Correction:
        async with self._engine.connect() as sa_connection:
            return await _load(await driver_connection(sa_connection), correction_id)

    async def list(
        self, *, status: CorrectionStatus | None, page_size: int, page_token: str
    ) -> tuple[list[Correction], str]:
        """Newest first; `page_token` is opaque (empty: the first page)."""
        limit = page_size_or_default(page_size, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX)
        offset = decode_page_token(page_token)
        async with self._engine.connect() as sa_connection:
            connection = await driver_connection(sa_connection)
            cursor = await connection.execute(
                f"SELECT {_COLUMNS} FROM corrections WHERE (%s::smallint IS NULL OR status = %s) "  # noqa: S608
                "ORDER BY requested_at DESC, correction_id LIMIT %s OFFSET %s",
                (
                    None if status is None else int(status),
                    None if status is None else int(status),
                    limit + 1,
                    offset,
                ),
            )
            rows = await cursor.fetchall()
        page = [_correction(row) for row in rows[:limit]]
        return page, encode_page_token(offset + limit) if len(rows) > limit else ""


def _state_invalid(correction: Correction, action: str) -> LedgerError:
    return LedgerError(
        Reason.CORRECTION_STATE_INVALID,
        f"cannot {action} a correction that is {correction.status.name}",
        correction_id=correction.correction_id,
        status=correction.status.name,
    )


async def _load(
    connection: DriverConnection, correction_id: str, *, for_update: bool = False
) -> Correction:
    cursor = await connection.execute(
        f"SELECT {_COLUMNS} FROM corrections WHERE correction_id = %s"  # noqa: S608
        + (" FOR UPDATE" if for_update else ""),
        (correction_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        raise LedgerError(
            Reason.CORRECTION_NOT_FOUND,
            f"no correction {correction_id!r}",
            correction_id=correction_id,
        )
    return _correction(row)


async def _decide(
    connection: DriverConnection,
    correction_id: str,
    status: CorrectionStatus,
    operator_id: str,
    comment: str,
) -> Correction:
    """Record an approval or a rejection (the row is locked by the caller)."""
    column = {CorrectionStatus.APPROVED: "approved", CorrectionStatus.REJECTED: "rejected"}[status]
    await connection.execute(
        f"UPDATE corrections SET status = %s, {column}_by = %s, {column}_at = now() "  # noqa: S608
        "WHERE correction_id = %s",
        (int(status), operator_id, correction_id),
    )
    await _record_step(connection, correction_id, status.name, operator_id, comment)
    decided = await _load(connection, correction_id)
    await record_events(connection, [correction_step(status.name, decided)])
    return decided


async def _record_step(
    connection: DriverConnection, correction_id: str, step: str, operator_id: str, comment: str
) -> None:
    await connection.execute(
        "INSERT INTO correction_steps (correction_id, step, operator_id, comment) "
        "VALUES (%s, %s, %s, %s)",
        (correction_id, step, operator_id, comment),
    )


async def _check_reversible(connection: DriverConnection, entry_id: int) -> None:
    cursor = await connection.execute(
        "SELECT (SELECT count(*) FROM journal_entries WHERE entry_id = %s), "
        "(SELECT count(*) FROM journal_entries WHERE reverses_entry_id = %s)",
        (entry_id, entry_id),
    )
    row = await cursor.fetchone()
    if row is None or row[0] == 0:
        raise LedgerError(Reason.ENTRY_NOT_FOUND, f"no entry {entry_id}", entry_id=str(entry_id))
    if row[1] != 0:
        raise LedgerError(
            Reason.CORRECTION_STATE_INVALID,
            f"entry {entry_id} is reversed already",
            entry_id=str(entry_id),
        )


async def _planned_entry(connection: DriverConnection, correction: Correction) -> PlannedEntry:
    memo = f"correction {correction.correction_id}: {correction.reason}"[:500]
    if correction.postings is not None:
        return PlannedEntry(
            kind=EntryKind.CORRECTION,
            reference=correction.correction_id,
            postings=correction.postings,
            correction_id=correction.correction_id,
            memo=memo,
        )
    entry_id = correction.reverse_entry_id
    await _check_reversible(connection, entry_id or 0)
    cursor = await connection.execute(
        "SELECT a.owner_id, a.asset, a.kind, p.amount, e.shard_id, e.symbol, e.engine_seq, "
        "e.epoch FROM postings AS p JOIN accounts AS a USING (account_id) "
        "JOIN journal_entries AS e USING (entry_id) WHERE p.entry_id = %s ORDER BY p.leg",
        (entry_id,),
    )
    rows = await cursor.fetchall()
    return PlannedEntry(
        kind=EntryKind.REVERSAL,
        reference=correction.correction_id,
        postings=tuple(
            Posting(AccountKey(owner, asset, AccountKind(kind)), -amount)
            for owner, asset, kind, amount, *_ in rows
        ),
        shard_id=rows[0][4],
        symbol=rows[0][5],
        engine_seq=rows[0][6],
        epoch=rows[0][7],
        reverses_entry_id=entry_id,
        correction_id=correction.correction_id,
        memo=memo,
    )
