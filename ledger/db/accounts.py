"""Account ids: the one lookup, and its cache.

Accounts are created on first use (INSERT ... ON CONFLICT DO NOTHING, then SELECT: two
statements, one round trip in a pipeline) and their ids cached for the life of the process:
an account is never deleted or renumbered (append-only, ledger/README.md). `AccountIds`
holds the cache and the statements; the lookup runs over either driver:
- `resolve` inside the caller's transaction (settlement, corrections): what it created is
  returned apart and cached only once that transaction committed (`remember`), since a
  rollback takes the rows back;
- `resolve_now` on an autocommit connection (the batch planner's process): created and
  committed at once, cached at once.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import psycopg

from ledger.db.connection import DriverConnection
from ledger.errors import LedgerInvariantError
from ledger.journal import AccountKey, AccountKind, PlannedEntry

INSERT_ACCOUNTS: Final = """
INSERT INTO accounts (owner_id, asset, kind)
SELECT * FROM unnest(%s::text[], %s::text[], %s::smallint[])
ON CONFLICT (owner_id, asset, kind) DO NOTHING
"""

SELECT_ACCOUNTS: Final = """
SELECT a.account_id, a.owner_id, a.asset, a.kind
FROM accounts AS a
JOIN unnest(%s::text[], %s::text[], %s::smallint[]) AS wanted (owner_id, asset, kind)
    ON a.owner_id = wanted.owner_id AND a.asset = wanted.asset AND a.kind = wanted.kind
"""


class AccountIds:
    """The cache of account ids, and the lookup that fills it."""

    def __init__(self, known: Mapping[AccountKey, int] | None = None) -> None:
        self._known: dict[AccountKey, int] = dict(known or {})

    def remember(self, account_ids: Mapping[AccountKey, int]) -> None:
        """Cache ids whose creating transaction committed."""
        self._known.update(account_ids)

    async def resolve(
        self, connection: DriverConnection, entries: Sequence[PlannedEntry]
    ) -> tuple[Mapping[AccountKey, int], dict[AccountKey, int]]:
        """Every account of `entries` by id (the cache, then what this transaction created),
        and the created ones (to `remember` after the commit)."""
        unknown = unknown_accounts(entries, self._known)
        if not unknown:
            return self._known, {}
        columns = account_columns(unknown)
        await connection.execute(INSERT_ACCOUNTS, columns)
        cursor = await connection.execute(SELECT_ACCOUNTS, columns)
        found = found_accounts(unknown, await cursor.fetchall())
        return ChainMap(found, self._known), found

    def resolve_now(
        self, connection: psycopg.Connection[tuple[object, ...]], entries: Sequence[PlannedEntry]
    ) -> Mapping[AccountKey, int]:
        """`resolve` on an autocommit connection, in a transaction of its own: the ids are
        committed, so they are cached at once."""
        unknown = unknown_accounts(entries, self._known)
        if unknown:
            columns = account_columns(unknown)
            with connection.transaction():
                connection.execute(INSERT_ACCOUNTS, columns)
                rows = connection.execute(SELECT_ACCOUNTS, columns).fetchall()
            self.remember(found_accounts(unknown, rows))  # type: ignore[arg-type]
        return self._known


def unknown_accounts(
    entries: Iterable[PlannedEntry], known: dict[AccountKey, int]
) -> list[AccountKey]:
    """The accounts `entries` post to that `known` lacks, in a fixed order."""
    wanted = {posting.account for entry in entries for posting in entry.postings}
    return sorted(wanted - known.keys(), key=lambda a: (a.owner_id, a.asset, a.kind))


def account_columns(accounts: Sequence[AccountKey]) -> tuple[list[str], list[str], list[int]]:
    """The parameters of INSERT_ACCOUNTS and SELECT_ACCOUNTS."""
    return (
        [account.owner_id for account in accounts],
        [account.asset for account in accounts],
        [int(account.kind) for account in accounts],
    )


def found_accounts(
    wanted: Sequence[AccountKey], rows: Iterable[tuple[int, str, str, int]]
) -> dict[AccountKey, int]:
    """SELECT_ACCOUNTS' rows by account; every wanted account must be among them."""
    found = {
        AccountKey(owner_id, asset, AccountKind(kind)): account_id
        for account_id, owner_id, asset, kind in rows
    }
    if len(found) != len(wanted):
        message = f"accounts not created: {set(wanted) - found.keys()}"
        raise LedgerInvariantError(message)
    return found
