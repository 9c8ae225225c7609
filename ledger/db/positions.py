"""The SQL of the settlement positions: each shard's epoch and engine_seq, each stream's last
seq and holes, and the gaps and stale-epoch events recorded beside them.

`load_positions` creates missing rows and reads them locked (`FOR UPDATE`), in one round
trip, so two transactions on the same shard are serialized; `save_positions` writes back
what changed. Both run inside the caller's transaction (ledger/settlement.py). The decisions
on these states are pure and live in ledger/sequencing.py and ledger/batch_rules.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.db.connection import DriverConnection
from ledger.posting_rules import EventHeader
from ledger.sequencing import Gap, ShardState, StreamState

_CREATE_SHARDS = """
INSERT INTO shard_positions (shard_id, epoch) SELECT unnest(%s::text[]), 0
ON CONFLICT DO NOTHING
"""


_SELECT_SHARDS = """
SELECT shard_id, epoch, engine_seq_last FROM shard_positions
WHERE shard_id = ANY(%s::text[]) ORDER BY shard_id FOR UPDATE
"""


_CREATE_STREAMS = """
INSERT INTO stream_positions (shard_id, symbol, seq_last)
SELECT shard_id, symbol, 0 FROM unnest(%s::text[], %s::text[]) AS s (shard_id, symbol)
ON CONFLICT DO NOTHING
"""


_SELECT_STREAMS = """
SELECT p.shard_id, p.symbol, p.seq_last FROM stream_positions AS p
JOIN unnest(%s::text[], %s::text[]) AS s (shard_id, symbol)
    ON p.shard_id = s.shard_id AND p.symbol = s.symbol
ORDER BY p.shard_id, p.symbol FOR UPDATE OF p
"""


_SELECT_HOLES = """
SELECT h.shard_id, h.symbol, h.first_missing_seq, h.last_missing_seq FROM sequence_holes AS h
JOIN unnest(%s::text[], %s::text[]) AS s (shard_id, symbol)
    ON h.shard_id = s.shard_id AND h.symbol = s.symbol
ORDER BY h.shard_id, h.symbol, h.first_missing_seq
"""


TRADE_SETTLED = """
SELECT EXISTS (SELECT 1 FROM journal_entries WHERE kind = %s AND reference = ANY(%s::text[]))
"""


async def load_positions(
    connection: DriverConnection,
    shard_ids: list[str],
    stream_keys: list[tuple[str, str]],
    *,
    also: tuple[str, tuple[object, ...]] | None = None,
) -> tuple[dict[str, ShardState], dict[tuple[str, str], StreamState], list[tuple[object, ...]]]:
    """Create missing shard and stream rows and read them locked, with the streams' holes,
    and the rows of the query `also` (statement, parameters) if given: one round trip."""
    columns = ([shard for shard, _ in stream_keys], [symbol for _, symbol in stream_keys])
    also_rows: list[tuple[object, ...]] = []
    async with connection.pipeline():
        await connection.execute(_CREATE_SHARDS, (shard_ids,))
        shards_cursor = await connection.execute(_SELECT_SHARDS, (shard_ids,))
        await connection.execute(_CREATE_STREAMS, columns)
        streams_cursor = await connection.execute(_SELECT_STREAMS, columns)
        holes_cursor = await connection.execute(_SELECT_HOLES, columns)
        also_cursor = None if also is None else await connection.execute(*also)
        shard_rows = await shards_cursor.fetchall()
        stream_rows = await streams_cursor.fetchall()
        hole_rows = await holes_cursor.fetchall()
        if also_cursor is not None:
            also_rows = await also_cursor.fetchall()
    shards = {
        shard_id: ShardState(epoch, engine_seq_last)
        for shard_id, epoch, engine_seq_last in shard_rows
    }
    streams = {(shard, symbol): StreamState(seq_last) for shard, symbol, seq_last in stream_rows}
    for shard, symbol, first, last in hole_rows:
        streams[(shard, symbol)].holes.append((first, last))
    return shards, streams, also_rows


async def save_positions(
    connection: DriverConnection,
    shards: dict[str, ShardState],
    streams: dict[tuple[str, str], StreamState],
    *,
    gaps: Sequence[tuple[str, str, Gap, str, int]] = (),
    stale: Sequence[tuple[EventHeader, int]] = (),
) -> None:
    changed_shards = sorted(key for key, state in shards.items() if state.changed)
    if changed_shards:
        await connection.execute(
            "UPDATE shard_positions SET epoch = s.epoch, engine_seq_last = s.engine_seq_last, "
            "advanced_at = now() "
            "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS s (shard_id, epoch, "
            "engine_seq_last) WHERE shard_positions.shard_id = s.shard_id",
            (
                changed_shards,
                [shards[k].epoch for k in changed_shards],
                [shards[k].engine_seq_last for k in changed_shards],
            ),
        )
    changed = sorted(key for key, state in streams.items() if state.changed)
    if changed:
        shard_column, symbol_column = [k[0] for k in changed], [k[1] for k in changed]
        await connection.execute(
            "UPDATE stream_positions SET seq_last = s.seq_last "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS s (shard_id, symbol, seq_last) "
            "WHERE stream_positions.shard_id = s.shard_id AND stream_positions.symbol = s.symbol",
            (shard_column, symbol_column, [streams[k].seq_last for k in changed]),
        )
    refilled = [key for key in changed if streams[key].holes_changed]
    if refilled:
        await connection.execute(
            "DELETE FROM sequence_holes AS h USING unnest(%s::text[], %s::text[]) AS s "
            "(shard_id, symbol) WHERE h.shard_id = s.shard_id AND h.symbol = s.symbol",
            ([key[0] for key in refilled], [key[1] for key in refilled]),
        )
        holes = [(key, hole) for key in refilled for hole in streams[key].holes]
        if holes:
            await connection.execute(
                "INSERT INTO sequence_holes (shard_id, symbol, first_missing_seq, "
                "last_missing_seq) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], "
                "%s::bigint[])",
                (
                    [key[0] for key, _ in holes],
                    [key[1] for key, _ in holes],
                    [hole[0] for _, hole in holes],
                    [hole[1] for _, hole in holes],
                ),
            )
    if gaps:
        await connection.execute(
            "INSERT INTO sequence_gaps (shard_id, symbol, first_missing_seq, last_missing_seq, "
            "detected_by_event_id) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], "
            "%s::bigint[], %s::text[])",
            (
                [g[0] for g in gaps],
                [g[1] for g in gaps],
                [g[2].first_missing_seq for g in gaps],
                [g[2].last_missing_seq for g in gaps],
                [g[3] for g in gaps],
            ),
        )
    if stale:
        await connection.execute(
            "INSERT INTO stale_epoch_events (event_id, shard_id, symbol, engine_seq, event_epoch, "
            "current_epoch) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::bigint[], %s::bigint[], %s::bigint[]) ON CONFLICT (event_id) DO NOTHING",
            (
                [h.event_id for h, _ in stale],
                [h.shard_id for h, _ in stale],
                [h.symbol for h, _ in stale],
                [h.engine_seq for h, _ in stale],
                [h.epoch for h, _ in stale],
                [current for _, current in stale],
            ),
        )
