"""The adjustments table as settlement touches it: an operator adjustment is POSTED once the
entry of its transfer is (ledger/adjustments.py owns the rest of its life)."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.db.connection import DriverConnection


async def mark_adjustments_posted(
    connection: DriverConnection, adjusted: Sequence[tuple[str, int]]
) -> None:
    """(transfer id, entry id) of operator adjustments just posted."""
    if adjusted:
        await connection.execute(
            "UPDATE adjustments SET status = 2, entry_id = a.entry_id "
            "FROM unnest(%s::text[], %s::bigint[]) AS a (transfer_id, entry_id) "
            "WHERE adjustments.adjustment_id = a.transfer_id",
            ([t for t, _ in adjusted], [e for _, e in adjusted]),
        )
