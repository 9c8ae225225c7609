"""Reads: materialized balances and journal entries, paged (opaque page tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db.connection import DriverConnection, driver_connection
from ledger.domain import Balance, Entry
from ledger.errors import LedgerError, Reason
from ledger.journal import AccountKey, AccountKind, EntryKind, Posting
from ledger.paging import decode_page_token, encode_page_token, page_size_or_default

BALANCES_PAGE_DEFAULT: Final = 500
BALANCES_PAGE_MAX: Final = 1_000
ENTRIES_PAGE_DEFAULT: Final = 100
ENTRIES_PAGE_MAX: Final = 1_000


async def list_balances(
    engine: AsyncEngine, *, owner_id: str, asset: str, page_size: int, page_token: str
) -> tuple[list[Balance], str]:
    limit = page_size_or_default(page_size, BALANCES_PAGE_DEFAULT, BALANCES_PAGE_MAX)
    offset = decode_page_token(page_token)
    async with engine.connect() as sa_connection:
        connection = await driver_connection(sa_connection)
        cursor = await connection.execute(
            "SELECT a.owner_id, a.asset, a.kind, b.balance, b.last_engine_seq "
            "FROM balances AS b JOIN accounts AS a USING (account_id) "
            "WHERE (%(owner)s = '' OR a.owner_id = %(owner)s) "
            "AND (%(asset)s = '' OR a.asset = %(asset)s) "
            "ORDER BY a.owner_id, a.asset, a.kind LIMIT %(limit)s OFFSET %(offset)s",
            {"owner": owner_id, "asset": asset, "limit": limit + 1, "offset": offset},
        )
        rows = await cursor.fetchall()
    balances = [
        Balance(AccountKey(owner, row_asset, AccountKind(kind)), balance, last)
        for owner, row_asset, kind, balance, last in rows[:limit]
    ]
    return balances, encode_page_token(offset + limit) if len(rows) > limit else ""


_ENTRY_COLUMNS = (
    "e.entry_id, e.kind, e.reference, e.source_event_id, e.symbol, e.engine_seq, e.epoch, "
    "e.posted_at, e.reverses_entry_id, e.correction_id, e.memo, e.shard_id"
)


async def _with_postings(connection: DriverConnection, rows: Sequence[Any]) -> list[Entry]:
    ids = [row[0] for row in rows]
    cursor = await connection.execute(
        "SELECT p.entry_id, a.owner_id, a.asset, a.kind, p.amount FROM postings AS p "
        "JOIN accounts AS a USING (account_id) WHERE p.entry_id = ANY(%s) "
        "ORDER BY p.entry_id, p.leg",
        (ids,),
    )
    postings: dict[int, list[Posting]] = {entry_id: [] for entry_id in ids}
    for entry_id, owner, asset, kind, amount in await cursor.fetchall():
        postings[entry_id].append(Posting(AccountKey(owner, asset, AccountKind(kind)), amount))
    return [
        Entry(
            row[0],
            EntryKind(row[1]),
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            tuple(postings[row[0]]),
            row[7],
            row[8],
            row[9],
            row[10],
            row[11],
        )
        for row in rows
    ]


# Each alternative has an index (migration 0007): the reference per kind, a trade's source
# event id (any other entry's equals its reference), the transfer id.
ENTRY_BY_REFERENCE = (
    f"(e.kind = ANY('{{{','.join(str(int(kind)) for kind in EntryKind)}}}'::smallint[]) "
    "AND e.reference = %(reference)s) "
    f"OR (e.kind = {int(EntryKind.TRADE)} AND e.source_event_id = %(reference)s) "
    "OR e.transfer_id = %(reference)s"
)


async def list_entries(
    engine: AsyncEngine,
    *,
    owner_id: str,
    asset: str,
    kind: EntryKind | None,
    reference: str,
    page_size: int,
    page_token: str,
) -> tuple[list[Entry], str]:
    """Newest first. `reference` matches an entry's reference, source event id or transfer id.

    The page token holds the last entry id of the page (a keyset position, not an offset):
    entries posted while a client pages do not shift the pages it has still to read."""
    limit = page_size_or_default(page_size, ENTRIES_PAGE_DEFAULT, ENTRIES_PAGE_MAX)
    below = decode_page_token(page_token)
    async with engine.connect() as sa_connection:
        connection = await driver_connection(sa_connection)
        cursor = await connection.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM journal_entries AS e "  # noqa: S608
            "WHERE (%(kind)s::smallint IS NULL OR e.kind = %(kind)s) "
            f"AND (%(reference)s = '' OR {ENTRY_BY_REFERENCE}) "
            "AND (%(owner)s = '' AND %(asset)s = '' OR EXISTS (SELECT 1 FROM postings AS p "
            "     JOIN accounts AS a USING (account_id) WHERE p.entry_id = e.entry_id "
            "     AND (%(owner)s = '' OR a.owner_id = %(owner)s) "
            "     AND (%(asset)s = '' OR a.asset = %(asset)s))) "
            "AND (%(below)s::bigint = 0 OR e.entry_id < %(below)s) "
            "ORDER BY e.entry_id DESC LIMIT %(limit)s",
            {
                "kind": None if kind is None else int(kind),
                "reference": reference,
                "owner": owner_id,
                "asset": asset,
                "limit": limit + 1,
                "below": below,
            },
        )
        rows = await cursor.fetchall()
        entries = await _with_postings(connection, rows[:limit])
    next_token = encode_page_token(rows[limit - 1][0]) if len(rows) > limit else ""
    return entries, next_token


async def get_entry(engine: AsyncEngine, entry_id: int) -> Entry:
    async with engine.connect() as sa_connection:
        connection = await driver_connection(sa_connection)
        cursor = await connection.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM journal_entries AS e WHERE e.entry_id = %s",  # noqa: S608
            (entry_id,),
        )
        rows = await cursor.fetchall()
        if not rows:
            raise LedgerError(
                Reason.ENTRY_NOT_FOUND, f"no entry {entry_id}", entry_id=str(entry_id)
            )
        [entry] = await _with_postings(connection, rows)
    return entry


async def entries_by_ids(connection: DriverConnection, entry_ids: Sequence[int]) -> list[Entry]:
    """The entries with these ids, in the order given (all must exist)."""
    cursor = await connection.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM journal_entries AS e "  # noqa: S608
        "WHERE e.entry_id = ANY(%s::bigint[])",
        (list(entry_ids),),
    )
    rows = await cursor.fetchall()
    by_id = {entry.entry_id: entry for entry in await _with_postings(connection, rows)}
    missing = [entry_id for entry_id in entry_ids if entry_id not in by_id]
    if missing:
        raise LedgerError(Reason.INTERNAL, f"entries {missing[:10]} are not in the journal")
    return [by_id[entry_id] for entry_id in entry_ids]
