"""Rebuild of the materialized balances from the postings, and the invariant check.

Invariants (checked by `check_invariants`, named as in InvariantViolation.invariant):
- ASSET_SUM_NOT_ZERO: the postings of every asset sum to zero (double entry);
- ENTRY_UNBALANCED: every entry's postings sum to zero per asset and number `leg_count`
  (the database refuses anything else; this re-checks what is stored);
- NEGATIVE_BALANCE: no AVAILABLE, HELD or FEES balance is below zero;
- EXTERNAL_POSITIVE: no EXTERNAL balance is above zero (more cannot leave than came in);
- MATERIALIZED_MISMATCH: every materialized balance equals the sum of its postings.
The check reads one snapshot (REPEATABLE READ), so concurrent settlement cannot make it
report a difference that never existed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db.connection import DriverConnection, driver_connection
from ledger.journal import AccountKey, AccountKind

_RECOMPUTED_VERSUS_MATERIALIZED = """
WITH recomputed AS (
    SELECT p.account_id, sum(p.amount)::bigint AS balance, max(e.engine_seq) AS last_engine_seq
    FROM postings AS p JOIN journal_entries AS e USING (entry_id)
    GROUP BY p.account_id
)
SELECT a.account_id, a.owner_id, a.asset, a.kind,
       coalesce(r.balance, 0), coalesce(b.balance, 0), coalesce(r.last_engine_seq, 0),
       b.account_id IS NOT NULL
FROM recomputed AS r
FULL JOIN balances AS b USING (account_id)
JOIN accounts AS a ON a.account_id = coalesce(r.account_id, b.account_id)
WHERE r.balance IS DISTINCT FROM b.balance
ORDER BY a.account_id
"""


@dataclass(frozen=True, slots=True)
class BalanceDifference:
    account: AccountKey
    expected: int
    actual: int


@dataclass(frozen=True, slots=True)
class InvariantViolation:
    invariant: str
    detail: str
    account: AccountKey | None = None
    amount: int = 0


@dataclass(frozen=True, slots=True)
class RebuildReport:
    accounts_rebuilt: int
    differences: tuple[BalanceDifference, ...]


async def _differences(
    connection: DriverConnection,
) -> list[tuple[int, BalanceDifference, int, bool]]:
    cursor = await connection.execute(_RECOMPUTED_VERSUS_MATERIALIZED)
    rows = await cursor.fetchall()
    return [
        (
            row[0],
            BalanceDifference(AccountKey(row[1], row[2], AccountKind(row[3])), row[4], row[5]),
            row[6],
            row[7],
        )
        for row in rows
    ]


async def rebuild_balances(engine: AsyncEngine, *, dry_run: bool) -> RebuildReport:
    """Recompute every balance from the postings, report each difference, replace them.

    Settlement is held off while the balances are replaced (EXCLUSIVE lock on `balances`),
    so the recomputation and the replacement see the same postings.
    """
    async with engine.begin() as sa_connection:
        connection = await driver_connection(sa_connection)
        if not dry_run:
            await connection.execute("LOCK TABLE balances IN EXCLUSIVE MODE")
        differences = await _differences(connection)
        cursor = await connection.execute("SELECT count(*) FROM accounts")
        row = await cursor.fetchone()
        accounts = int(row[0]) if row is not None else 0
        if not dry_run and differences:
            await connection.execute(
                "INSERT INTO balances (account_id, balance, last_engine_seq) "
                "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) "
                "ON CONFLICT (account_id) DO UPDATE SET balance = EXCLUDED.balance, "
                "last_engine_seq = EXCLUDED.last_engine_seq",
                (
                    [account_id for account_id, _, _, _ in differences],
                    [difference.expected for _, difference, _, _ in differences],
                    [last for _, _, last, _ in differences],
                ),
            )
    return RebuildReport(accounts, tuple(difference for _, difference, _, _ in differences))


async def check_invariants(engine: AsyncEngine) -> list[InvariantViolation]:
    """Every broken invariant (empty: the ledger is consistent)."""
    violations: list[InvariantViolation] = []
    async with engine.connect() as sa_connection:
        await sa_connection.execution_options(isolation_level="REPEATABLE READ")
        connection = await driver_connection(sa_connection)
        cursor = await connection.execute(
            "SELECT a.asset, sum(p.amount)::bigint FROM postings AS p JOIN accounts AS a "
            "USING (account_id) GROUP BY a.asset HAVING sum(p.amount) <> 0 ORDER BY a.asset"
        )
        violations += [
            InvariantViolation(
                "ASSET_SUM_NOT_ZERO", f"{asset} postings sum to {total}", amount=total
            )
            for asset, total in await cursor.fetchall()
        ]
        cursor = await connection.execute(
            "SELECT p.entry_id, a.asset, sum(p.amount)::bigint FROM postings AS p "
            "JOIN accounts AS a USING (account_id) GROUP BY p.entry_id, a.asset "
            "HAVING sum(p.amount) <> 0 ORDER BY p.entry_id"
        )
        violations += [
            InvariantViolation(
                "ENTRY_UNBALANCED", f"entry {entry_id}: {asset} sums to {total}", amount=total
            )
            for entry_id, asset, total in await cursor.fetchall()
        ]
        cursor = await connection.execute(
            "SELECT e.entry_id, e.leg_count, count(p.leg) FROM journal_entries AS e "
            "LEFT JOIN postings AS p USING (entry_id) GROUP BY e.entry_id "
            "HAVING count(p.leg) <> e.leg_count ORDER BY e.entry_id"
        )
        violations += [
            InvariantViolation("ENTRY_UNBALANCED", f"entry {entry_id}: {legs} of {expected} legs")
            for entry_id, expected, legs in await cursor.fetchall()
        ]
        cursor = await connection.execute(
            "SELECT a.owner_id, a.asset, a.kind, b.balance FROM balances AS b "
            "JOIN accounts AS a USING (account_id) "
            "WHERE (a.kind IN (1, 2, 3) AND b.balance < 0) OR (a.kind = 4 AND b.balance > 0) "
            "ORDER BY a.account_id"
        )
        for owner, asset, kind, balance in await cursor.fetchall():
            account = AccountKey(owner, asset, AccountKind(kind))
            name = (
                "EXTERNAL_POSITIVE"
                if account.kind is AccountKind.EXTERNAL
                else ("NEGATIVE_BALANCE")
            )
            violations.append(
                InvariantViolation(name, f"{owner} {asset} {account.kind.name}", account, balance)
            )
        violations += [
            InvariantViolation(
                "MATERIALIZED_MISMATCH",
                f"materialized {difference.actual}, postings sum to {difference.expected}",
                difference.account,
                difference.actual - difference.expected,
            )
            for _, difference, _, _ in await _differences(connection)
        ]
        await sa_connection.rollback()
    return violations
