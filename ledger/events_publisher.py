"""The ledger's events publisher: `ledger_outbox` -> `ledger.events.v1`, at least once, in seq
order (docs/adr/0010, "Ledger events").

Invariants:
1. One publisher per database: it holds a session advisory lock (`PUBLISHER_LOCK_KEY`) on a
   connection of its own for as long as it runs; a second instance waits for the lock
   (a hot standby), so two publishers never interleave their rounds on the partition.
2. Seqs before sending: a round claims the oldest unpublished rows; rows without seqs get
   the next ones of the stream (`ledger_event_streams`), and that is COMMITTED before
   anything is sent. Rows keep their seqs forever (the database refuses a change), so a
   re-send after any failure or crash carries the same event ids AND the same seqs.
3. Rounds are strictly sequential and in seq order: rows with seqs (an unacknowledged round
   of an earlier attempt or instance) come first; each round is sent with acks=all to one
   partition (key = `LEDGER_STREAM`), then its rows are marked published. Any failure
   closes the producer and sends the same round again after a backoff: duplicates are
   possible, losses are not; the first occurrence of each seq is in seq order. Consumers
   dedupe by event_id (or seq).
4. Entry batches are expanded at publish time into one EntryPosted per entry, read from the
   journal (immutable), so the bytes of a re-sent event equal the first ones.
No idempotent producer and no transactions (Tansu supports neither; docs/shared BRIEF).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from common.event_path_health import BackgroundTask, EventPath
from common.topics import LEDGER_EVENTS_TOPIC, TopicSpec, ensure_topics
from ledger.db.connection import DriverConnection, driver_connection
from ledger.events_outbox import LEDGER_STREAM, entry_posted, with_seq
from ledger.read_model import entries_by_ids

LOGGER: Final = logging.getLogger("ledger.events")
PUBLISHER_LOCK_KEY: Final = 0x1ED6E4_0010  # pg_advisory_lock key of the ledger's publisher
MIB: Final = 1024 * 1024

_CLAIM = """
SELECT outbox_id, entry_ids, entry_id_ranges, envelope, first_seq, event_count FROM ledger_outbox
WHERE published_at IS NULL
ORDER BY first_seq NULLS LAST, outbox_id
LIMIT %s
"""
_NEXT_SEQS = """
UPDATE ledger_event_streams SET seq_last = seq_last + %s WHERE stream = %s RETURNING seq_last
"""
_ASSIGN_SEQS = """
UPDATE ledger_outbox SET first_seq = s.first_seq, event_count = s.event_count
FROM unnest(%s::bigint[], %s::bigint[], %s::integer[]) AS s (outbox_id, first_seq, event_count)
WHERE ledger_outbox.outbox_id = s.outbox_id AND ledger_outbox.first_seq IS NULL
"""
_MARK_PUBLISHED = """
UPDATE ledger_outbox SET published_at = now()
WHERE outbox_id = ANY(%s::bigint[]) AND published_at IS NULL
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEventsOptions:
    bootstrap_servers: str
    topic: str = LEDGER_EVENTS_TOPIC
    create_topic: bool = True
    round_rows_max: int = 64
    round_events_max: int = 4_000  # at least one row per round, whatever its size
    idle_seconds: float = 0.1  # how often an idle publisher looks for new rows
    request_timeout_ms: int = 5_000
    backoff_seconds_initial: float = 0.05
    backoff_seconds_max: float = 2.0
    client_id: str = "exchange-ledger-events"

    def __post_init__(self) -> None:
        if self.round_rows_max < 1 or self.round_events_max < 1:
            raise ValueError("round limits must be >= 1")
        if not 0 < self.backoff_seconds_initial <= self.backoff_seconds_max:
            raise ValueError("0 < backoff_seconds_initial <= backoff_seconds_max")


@dataclass(frozen=True, slots=True)
class _Row:
    outbox_id: int
    entry_ids: list[int] | None
    envelope: bytes | None
    first_seq: int
    event_count: int


class LedgerEventsPublisher(BackgroundTask):
    """`start()` in a running loop, `stop()` at the end."""

    def __init__(
        self,
        engine: AsyncEngine,
        options: LedgerEventsOptions,
        *,
        after_send: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`after_send` runs after the broker acknowledged a round, before the rows are marked
        published (a crash-test seam)."""
        self._engine = engine
        self.options = options
        self._after_send = after_send
        self._progress = asyncio.Event()
        self._topic_ready = False
        self.published_seq = 0  # the last seq acknowledged AND marked published
        self.events_sent_count = 0
        self.rounds_count = 0
        self.send_failures_count = 0
        self.last_error: BaseException | None = None
        self.path = EventPath("ledger events publisher")  # rounds published or failing

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait_published(self, seq: int, *, timeout_seconds: float) -> None:
        """Wait until every event up to `seq` is published (TimeoutError if not)."""
        async with asyncio.timeout(timeout_seconds):
            while self.published_seq < seq:
                self._progress.clear()
                await self._progress.wait()

    async def _run(self) -> None:
        while True:  # the database unreachable at start or the lock's connection lost: retry
            try:
                async with self._engine.connect() as lock_connection:
                    try:
                        locking = await driver_connection(lock_connection)
                        await locking.execute("SELECT pg_advisory_lock(%s)", (PUBLISHER_LOCK_KEY,))
                        await locking.commit()  # the lock is the session's; end the transaction
                        await self._publish_loop()
                    finally:
                        # Never hand a connection that may hold the lock back to the pool.
                        await lock_connection.invalidate()
            except Exception as error:  # noqa: BLE001
                self.last_error = error
                LOGGER.warning("ledger events: publisher lock failed, retrying: %r", error)
            await asyncio.sleep(self.options.backoff_seconds_max)

    async def _publish_loop(self) -> None:
        backoff_seconds = self.options.backoff_seconds_initial
        while True:
            producer: Any = None
            try:
                producer = await self._connect()
                while True:
                    rows = await self._claim_round()
                    if not rows:
                        await asyncio.sleep(self.options.idle_seconds)
                        continue
                    await self._send(producer, rows)
                    if self._after_send is not None:
                        await self._after_send()
                    await self._mark_published(rows)
                    self.path.succeeded()
                    backoff_seconds = self.options.backoff_seconds_initial
            except Exception as error:  # noqa: BLE001  (broker or database: reconnect, resend)
                self.last_error = error
                self.send_failures_count += 1
                self.path.failed(error)
                LOGGER.warning("ledger events: round failed, retrying: %r", error)
            finally:
                if producer is not None:
                    with contextlib.suppress(Exception, TimeoutError):
                        await asyncio.wait_for(producer.stop(), self._timeout_seconds)
            await asyncio.sleep(backoff_seconds)
            backoff_seconds = min(2 * backoff_seconds, self.options.backoff_seconds_max)

    @property
    def _timeout_seconds(self) -> float:
        return self.options.request_timeout_ms / 1000 + 1

    async def _connect(self) -> Any:
        options = self.options
        if options.create_topic and not self._topic_ready:
            await ensure_topics(
                options.bootstrap_servers,
                [TopicSpec(name=options.topic, partitions=1)],
                request_timeout_ms=options.request_timeout_ms,
            )
            self._topic_ready = True
        producer = AIOKafkaProducer(
            bootstrap_servers=options.bootstrap_servers,
            client_id=options.client_id,
            acks="all",
            enable_idempotence=False,
            max_batch_size=MIB,
            max_request_size=8 * MIB,
            request_timeout_ms=options.request_timeout_ms,
            linger_ms=0,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(producer.stop(), self._timeout_seconds)
            raise
        return producer

    async def _claim_round(self) -> list[_Row]:
        """The next rows to send, in seq order, seqs assigned and committed."""
        options = self.options
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            cursor = await connection.execute(_CLAIM, (options.round_rows_max,))
            claimed = [_claimed(row) for row in await cursor.fetchall()]
            rows: list[Any] = []
            events = 0
            for row in claimed:
                count = row[4] or (len(row[1]) if row[1] is not None else 1)
                if rows and events + count > options.round_events_max:
                    break
                rows.append(row)
                events += count
            return await _assign_seqs(connection, rows)

    async def _send(self, producer: Any, rows: Sequence[_Row]) -> None:
        topic, key = self.options.topic, LEDGER_STREAM.encode()
        values = await self._values(rows)
        futures = [await producer.send(topic, value, key=key) for value in values]
        async with asyncio.timeout(2 * self._timeout_seconds):
            for future in futures:  # acks=all, in order
                await future
        self.events_sent_count += len(values)

    async def _values(self, rows: Sequence[_Row]) -> list[bytes]:
        entry_ids = [entry_id for row in rows for entry_id in row.entry_ids or ()]
        entries = {}
        if entry_ids:
            async with self._engine.connect() as sa_connection:
                connection = await driver_connection(sa_connection)
                entries = {e.entry_id: e for e in await entries_by_ids(connection, entry_ids)}
                await sa_connection.rollback()
        values = []
        for row in rows:
            if row.envelope is not None:
                values.append(with_seq(row.envelope, row.first_seq))
                continue
            for offset, entry_id in enumerate(row.entry_ids or ()):
                envelope = entry_posted(entries[entry_id], seq=row.first_seq + offset)
                values.append(envelope.SerializeToString())
        return values

    async def _mark_published(self, rows: Sequence[_Row]) -> None:
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            await connection.execute(_MARK_PUBLISHED, ([row.outbox_id for row in rows],))
        last = rows[-1]
        self.published_seq = last.first_seq + last.event_count - 1
        self.rounds_count += 1
        self._progress.set()


def _claimed(row: Any) -> tuple[Any, ...]:
    """A claimed row as (outbox_id, entry ids or None, envelope, first_seq, event_count):
    an entry batch's ranges (migration 0005) or id array (rows from before) as its ids."""
    outbox_id, entry_ids, entry_id_ranges, envelope, first_seq, event_count = row
    if entry_id_ranges is not None:
        entry_ids = [
            entry_id
            for part in entry_id_ranges
            for entry_id in range(part.lower, part.upper)  # canonical: [lower, upper)
        ]
    return outbox_id, entry_ids, envelope, first_seq, event_count


async def _assign_seqs(connection: DriverConnection, claimed: Sequence[Any]) -> list[_Row]:
    """Give the claimed rows without seqs the next seqs of the stream (rows with seqs come
    first in the claim, so the round stays in seq order)."""
    new = [row for row in claimed if row[3] is None]
    counts = [len(row[1]) if row[1] is not None else 1 for row in new]
    first_seqs: list[int] = []
    if new:
        cursor = await connection.execute(_NEXT_SEQS, (sum(counts), LEDGER_STREAM))
        result = await cursor.fetchone()
        if result is None:
            raise RuntimeError(f"the ledger event stream {LEDGER_STREAM!r} is missing")
        next_seq = result[0] - sum(counts) + 1
        for count in counts:
            first_seqs.append(next_seq)
            next_seq += count
        await connection.execute(_ASSIGN_SEQS, ([row[0] for row in new], first_seqs, counts))
    assigned = dict(zip([row[0] for row in new], zip(first_seqs, counts, strict=True), strict=True))
    rows = []
    for outbox_id, entry_ids, envelope, stored_first_seq, stored_count in claimed:
        first_seq, event_count = (
            assigned[outbox_id] if stored_first_seq is None else (stored_first_seq, stored_count)
        )
        rows.append(
            _Row(
                outbox_id,
                None if entry_ids is None else list(entry_ids),
                None if envelope is None else bytes(envelope),
                first_seq,
                event_count,
            )
        )
    return rows
