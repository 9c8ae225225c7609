"""Writes entries, their postings and the materialized balances, inside a caller's transaction.

Used by settlement (batches of events) and by corrections. Within one call:
1. entries are inserted with ON CONFLICT (kind, reference) DO NOTHING: an entry whose
   reference exists already (an event posted before, a trade settled before, a correction
   applied before) is not inserted again, and the caller learns the earlier entry's id;
2. accounts are created on first use (an in-process cache of their ids is updated only
   after the caller's commit, so a rolled-back transaction leaves no stale id behind);
3. all postings of all new entries go in ONE `COPY` (the database's statement trigger checks
   each entry is complete and balances per asset);
4. balances are updated once per account (deltas summed), in account id order so that
   concurrent writers always lock rows in the same order and cannot deadlock (`write` does
   it itself; after `write_new` the caller applies `balance_changes` with `add_to_balances`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ledger.db.accounts import AccountIds
from ledger.db.connection import DriverConnection
from ledger.db.copy_rows import ENTRIES_COPY, POSTINGS_COPY, entries_text, postings_text
from ledger.errors import LedgerInvariantError
from ledger.journal import AccountKey, EntryKey, EntryKind, PlannedEntry

_INSERT_ENTRIES = """
INSERT INTO journal_entries (kind, reference, leg_count, source_event_id, shard_id, symbol, seq,
    engine_seq, epoch, transfer_id, occurred_at, reverses_entry_id, correction_id, memo)
SELECT * FROM unnest(%s::smallint[], %s::text[], %s::smallint[], %s::text[], %s::text[],
    %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[],
    %s::bigint[], %s::text[], %s::text[])
ON CONFLICT (kind, reference) DO NOTHING
RETURNING entry_id, kind, reference
"""

_SELECT_ENTRY_IDS = """
SELECT e.entry_id, e.kind, e.reference
FROM journal_entries AS e
JOIN unnest(%s::smallint[], %s::text[]) AS wanted (kind, reference)
    ON e.kind = wanted.kind AND e.reference = wanted.reference
"""

_UPSERT_BALANCES = """
INSERT INTO balances (account_id, balance, last_engine_seq)
SELECT * FROM unnest(%s::text::bigint[], %s::text::bigint[], %s::text::bigint[])
ON CONFLICT (account_id) DO UPDATE
SET balance = balances.balance + EXCLUDED.balance,
    last_engine_seq = GREATEST(balances.last_engine_seq, EXCLUDED.last_engine_seq)
"""


@dataclass(frozen=True, slots=True)
class BalanceChanges:
    """What the entries just inserted add to each account, in account id order."""

    account_ids: list[int]
    deltas: list[int]
    engine_seqs: list[int]


NO_BALANCE_CHANGES: Final = BalanceChanges([], [], [])


@dataclass(frozen=True, slots=True)
class WrittenEntries:
    """Ids of the entries inserted now, and of those that existed already."""

    inserted: dict[EntryKey, int]
    existing: dict[EntryKey, int]
    new_account_ids: dict[AccountKey, int]
    balance_changes: BalanceChanges = NO_BALANCE_CHANGES


class JournalWriter:
    """Holds the account-id cache (`accounts`); every method runs inside the caller's
    transaction."""

    def __init__(self) -> None:
        self.accounts = AccountIds()

    def remember_accounts(self, account_ids: dict[AccountKey, int]) -> None:
        """Call after the transaction that created them committed."""
        self.accounts.remember(account_ids)

    async def existing_entry_ids(
        self, connection: DriverConnection, keys: Iterable[EntryKey]
    ) -> dict[EntryKey, int]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        cursor = await connection.execute(
            _SELECT_ENTRY_IDS, ([int(kind) for kind, _ in wanted], [ref for _, ref in wanted])
        )
        return {
            (EntryKind(kind), reference): entry_id
            for entry_id, kind, reference in await cursor.fetchall()
        }

    async def write(
        self, connection: DriverConnection, entries: Sequence[PlannedEntry]
    ) -> WrittenEntries:
        """Insert what is new of `entries` (distinct (kind, reference) expected)."""
        if not entries:
            return WrittenEntries({}, {}, {})
        keys = [(entry.kind, entry.reference) for entry in entries]
        if len(set(keys)) != len(keys):
            message = "entries of one write must have distinct (kind, reference)"
            raise LedgerInvariantError(message)
        cursor = await connection.execute(_INSERT_ENTRIES, _entry_columns(entries))
        inserted = {
            (EntryKind(kind), reference): entry_id
            for entry_id, kind, reference in await cursor.fetchall()
        }
        missing = [key for key in keys if key not in inserted]
        existing = await self.existing_entry_ids(connection, missing)
        if len(existing) != len(missing):
            message = f"entries neither inserted nor found: {set(missing) - set(existing)}"
            raise LedgerInvariantError(message)
        new_entries = [entry for entry in entries if (entry.kind, entry.reference) in inserted]
        written = await self._post_legs(connection, new_entries, inserted, existing)
        await add_to_balances(connection, written.balance_changes)
        return written

    async def write_new(
        self, connection: DriverConnection, entries: Sequence[PlannedEntry]
    ) -> WrittenEntries:
        """The settlement fast path: entries whose novelty the caller established by stream
        position. Only a trade can exist already under another event id, so trade references
        are looked up first (in the same round trip as the id allocation); the rest go in with
        COPY (the unique (kind, reference) constraint still refuses a duplicate, failing the
        whole transaction). The balances are NOT updated here: the caller applies
        `balance_changes` with `add_to_balances` (settlement does it in a pipeline with its
        bookkeeping)."""
        if not entries:
            return WrittenEntries({}, {}, {})
        trades = [
            (entry.kind, entry.reference) for entry in entries if entry.kind is EntryKind.TRADE
        ]
        async with connection.pipeline():
            looking_up = None
            if trades:
                looking_up = await connection.execute(
                    _SELECT_ENTRY_IDS,
                    ([int(kind) for kind, _ in trades], [ref for _, ref in trades]),
                )
            # Ids for every candidate: a trade found to exist leaves its id unused (a gap).
            allocating = await connection.execute(
                "SELECT ledger_allocate_entry_ids(%s)", (len(entries),)
            )
            existing = (
                {}
                if looking_up is None
                else {
                    (EntryKind(kind), reference): entry_id
                    for entry_id, kind, reference in await looking_up.fetchall()
                }
            )
            ids = [row[0] for row in await allocating.fetchall()]
        new_entries = [e for e in entries if (e.kind, e.reference) not in existing]
        ids = ids[: len(new_entries)]
        inserted = {
            (e.kind, e.reference): entry_id for e, entry_id in zip(new_entries, ids, strict=True)
        }
        async with connection.cursor().copy(ENTRIES_COPY) as copy:
            await copy.write(entries_text(new_entries, ids))
        return await self._post_legs(connection, new_entries, inserted, existing)

    async def _post_legs(
        self,
        connection: DriverConnection,
        new_entries: Sequence[PlannedEntry],
        inserted: dict[EntryKey, int],
        existing: dict[EntryKey, int],
    ) -> WrittenEntries:
        """Postings and balance changes of the entries just inserted."""
        account_ids, new_account_ids = await self.accounts.resolve(connection, new_entries)
        await _copy_postings(connection, new_entries, inserted, account_ids)
        changes = balance_changes(new_entries, account_ids)
        return WrittenEntries(inserted, existing, new_account_ids, changes)


def _entry_columns(entries: Sequence[PlannedEntry]) -> tuple[list[object], ...]:
    return (
        [int(entry.kind) for entry in entries],
        [entry.reference for entry in entries],
        [len(entry.postings) for entry in entries],
        [entry.source_event_id for entry in entries],
        [entry.shard_id for entry in entries],
        [entry.symbol for entry in entries],
        [entry.seq for entry in entries],
        [entry.engine_seq for entry in entries],
        [entry.epoch for entry in entries],
        [entry.transfer_id for entry in entries],
        [entry.occurred_at for entry in entries],
        [entry.reverses_entry_id for entry in entries],
        [entry.correction_id for entry in entries],
        [entry.memo for entry in entries],
    )


async def _copy_postings(
    connection: DriverConnection,
    entries: Sequence[PlannedEntry],
    entry_ids: dict[EntryKey, int],
    account_ids: Mapping[AccountKey, int],
) -> None:
    if not entries:
        return
    ids = [entry_ids[(entry.kind, entry.reference)] for entry in entries]
    async with connection.cursor().copy(POSTINGS_COPY) as copy:
        await copy.write(postings_text(entries, ids, account_ids))


def balance_changes(
    entries: Sequence[PlannedEntry], account_ids: Mapping[AccountKey, int]
) -> BalanceChanges:
    deltas: dict[int, int] = {}
    engine_seqs: dict[int, int] = {}
    for entry in entries:
        engine_seq = entry.engine_seq
        for account, amount in entry.postings:
            account_id = account_ids[account]
            deltas[account_id] = deltas.get(account_id, 0) + amount
            if engine_seqs.get(account_id, 0) < engine_seq:
                engine_seqs[account_id] = engine_seq
    ordered = sorted(deltas)
    return BalanceChanges(
        ordered, [deltas[a] for a in ordered], [engine_seqs.get(a, 0) for a in ordered]
    )


def array_text(values: list[int]) -> str:
    """An int list as a PostgreSQL array literal: one C-level join instead of psycopg's
    per-element dumping (thousands of elements per batch)."""
    return "{" + ",".join(map(str, values)) + "}"


BalanceArrays = tuple[str, str, str]  # account ids, deltas, engine seqs: array literals


def balance_arrays(changes: BalanceChanges) -> BalanceArrays | None:
    """`changes` as the upsert's parameters (None: no account changes)."""
    if not changes.account_ids:
        return None
    return (
        array_text(changes.account_ids),
        array_text(changes.deltas),
        array_text(changes.engine_seqs),
    )


async def add_to_balances(connection: DriverConnection, changes: BalanceChanges) -> None:
    """One upsert for all accounts (deltas summed per account), in account id order so that
    concurrent writers lock rows in the same order and cannot deadlock."""
    await add_balance_arrays(connection, balance_arrays(changes))


async def add_balance_arrays(connection: DriverConnection, arrays: BalanceArrays | None) -> None:
    """`add_to_balances` for changes already turned into `balance_arrays`."""
    if arrays is not None:
        await connection.execute(_UPSERT_BALANCES, arrays)
