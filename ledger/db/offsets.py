"""The consumer's Kafka offsets, stored in PostgreSQL in the settlement transaction.

A batch advances each partition's offset compare-and-set: it must start where the stored
offset is, so a second consumer of the same partition (a zombie after a rebalance) fails
with `OffsetConflictError` instead of interleaving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db.connection import DriverConnection, driver_connection


@dataclass(frozen=True, slots=True)
class OffsetAdvance:
    """The batch read a partition from `from_offset` (inclusive) to `to_offset` (exclusive)."""

    consumer_group: str
    topic: str
    partition: int
    from_offset: int
    to_offset: int


class OffsetConflictError(Exception):
    """The stored offset is not where this batch started: another consumer moved it."""


async def advance_offsets(connection: DriverConnection, offsets: Sequence[OffsetAdvance]) -> None:
    for advance in offsets:
        # Compare-and-set: a first batch creates the row; a later one moves it only from
        # where it starts (a concurrent first insert makes the loser's WHERE false).
        cursor = await connection.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET next_offset = EXCLUDED.next_offset "
            "WHERE consumer_offsets.next_offset = %s RETURNING next_offset",
            (
                advance.consumer_group,
                advance.topic,
                advance.partition,
                advance.to_offset,
                advance.from_offset,
            ),
        )
        if await cursor.fetchone() is None:
            message = (
                f"{advance.topic}[{advance.partition}] for {advance.consumer_group}: the stored "
                f"offset is not {advance.from_offset}, where this batch starts"
            )
            raise OffsetConflictError(message)


async def stored_offsets(engine: AsyncEngine, consumer_group: str, topic: str) -> dict[int, int]:
    """partition -> next offset to read, as the last committed batch left them."""
    async with engine.connect() as connection:
        driver = await driver_connection(connection)
        cursor = await driver.execute(
            "SELECT partition, next_offset FROM consumer_offsets "
            "WHERE consumer_group = %s AND topic = %s",
            (consumer_group, topic),
        )
        rows = await cursor.fetchall()
        await connection.rollback()
    return {int(partition): int(offset) for partition, offset in rows}
