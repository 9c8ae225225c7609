"""The outbox publisher: journal -> Kafka-API broker, at least once, in engine order.

A background asyncio task reads the journal (core/outbox/journal.py) from the durable
publish cursor (core/outbox/cursor.py) and publishes each command's envelopes:
every event to `core.events.v1` (key = shard id: the total engine order of the shard) and
each TradeExecuted also to `core.trade-events.v1` (key = symbol).

Invariants:
1. Rounds are strictly sequential. A round is a run of whole journal records (commands)
   starting right after the last acknowledged one; it is sent as ONE record batch per
   (topic, partition) (aiokafka `send_batch`) and the next round starts only after the
   broker acknowledged (acks=all) every batch of this one. So a partition holds, in order,
   rounds that each landed completely or not at all; retries only repeat a suffix, never
   reorder: the first occurrence of each event id is in engine order.
2. On any failure (broker down, timeout, metadata) the producer is closed and recreated
   after a backoff, and the SAME round is sent again. Duplicates are possible, losses are
   not; consumers dedupe by event_id. No idempotent producer, no transactions (Tansu
   supports neither; ADR 0007).
3. The cursor only moves to an acknowledged seq, and is stored durably (atomic replace,
   fsync) under the epoch fence; a restart resumes right after it (possibly re-publishing
   the rounds acknowledged after the last save).
4. Fencing: the epoch fence is checked before every round and every cursor write; a
   fenced-off instance publishes nothing more and stops (`fenced`). Events carry the epoch
   of the instance that publishes them: records journaled under an older epoch get the
   publisher's epoch appended as a later `epoch` field (protobuf: the last value wins).
5. Retention: journal segments wholly before the durable cursor + 1 are deleted after each
   cursor save.
6. Position: after each acknowledged round the publisher knows the offset after the round's
   last record in the shard's `core.events.v1` partition (`position`, in memory; None until
   the first round of this process is acknowledged). Every event of a later command lands
   at or after it (rounds are sequential), which is where a projection that starts from the
   state at a later engine seq resumes reading (docs/adr/0017).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from common.event_path_health import EventPath
from common.topics import CORE_EVENTS_TOPIC, TRADE_EVENTS_TOPIC, TopicSpec, ensure_topics
from core.contracts.event_wire import varint
from core.outbox.cursor import PUBLISH_CURSOR_NAME, read_cursor, write_cursor
from core.outbox.errors import (
    JournalFormatError,
    OutboxError,
    OutboxInvariantError,
    OutboxNotStartedError,
    PublishCursorCorruptionError,
)
from core.outbox.journal import JournalReader, OutboxJournal
from core.outbox.journal_format import decode_events
from core.wal import EpochFence, FencedError, WalRecord

KIB: Final = 1024
MIB: Final = 1024 * KIB
ENVELOPE_EPOCH_TAG: Final = b"\x40"  # field 8 (epoch), wire type 0 (varint)
FATAL_ERRORS: Final = (
    OutboxInvariantError,
    JournalFormatError,
    PublishCursorCorruptionError,
    OutboxNotStartedError,
)


def epoch_override(epoch: int) -> bytes:
    """Bytes that, appended to a serialized EventEnvelope, set its epoch to `epoch`."""
    return ENVELOPE_EPOCH_TAG + varint(epoch)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedPosition:
    """Where the outbox is in the shard's partition of the events topic."""

    engine_seq: int  # the last acknowledged command
    topic: str
    partition: int
    next_offset: int  # the offset after the last record of that command's round


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherOptions:
    bootstrap_servers: str
    events_topic: TopicSpec = field(default_factory=lambda: TopicSpec(name=CORE_EVENTS_TOPIC))
    trade_events_topic: TopicSpec = field(
        default_factory=lambda: TopicSpec(name=TRADE_EVENTS_TOPIC)
    )
    create_topics: bool = True
    round_records_max: int = 4096  # commands per round
    round_bytes_max: int = 256 * KIB  # journal payload bytes per round (at least one record)
    batch_bytes_max: int = 8 * MIB  # producer batch/request size: round + one large record
    request_timeout_ms: int = 5_000
    backoff_seconds_initial: float = 0.05
    backoff_seconds_max: float = 2.0
    client_id: str = "exchange-core-outbox"

    def __post_init__(self) -> None:
        if self.round_records_max < 1 or self.round_bytes_max < 1:
            raise ValueError("round limits must be >= 1")
        if self.batch_bytes_max < 2 * self.round_bytes_max:
            raise ValueError("batch_bytes_max must be >= 2 * round_bytes_max")
        if not 0 < self.backoff_seconds_initial <= self.backoff_seconds_max:
            raise ValueError("0 < backoff_seconds_initial <= backoff_seconds_max")


class OutboxPublisher:
    """Publishes a started OutboxJournal. `start()` after `Sequencer.open`, `stop()` at the end."""

    def __init__(self, journal: OutboxJournal, options: PublisherOptions) -> None:
        self.journal = journal
        self.options = options
        self._shard_key = journal.shard_id.encode()
        self._partitioner = DefaultPartitioner()
        self._epoch = 0
        self._epoch_suffix = b""
        self._cursor_path: Path | None = None
        self._round_fence: EpochFence | None = None
        self._cursor_fence: EpochFence | None = None
        self._published_seq = 0
        self._cursor_seq = 0
        self._position: PublishedPosition | None = None
        self._progress = asyncio.Event()
        self._publish_task: asyncio.Task[None] | None = None
        self._cursor_task: asyncio.Task[None] | None = None
        self._topics_ready = False
        self._stopping = False
        self._partitions: dict[str, list[int]] = {}
        self.fenced = False
        self.failure: BaseException | None = None  # a fatal error: publishing stopped
        self.last_error: BaseException | None = None  # the last retried error
        self.rounds_count = 0
        self.records_published_count = 0
        self.events_published_count = 0
        self.send_failures_count = 0
        self.producer_starts_count = 0
        self.segments_removed_count = 0
        self._reader: JournalReader | None = None
        self.path = EventPath("core outbox publisher")  # rounds acknowledged or failing

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Read the durable cursor and start publishing in the background (needs a loop)."""
        journal = self.journal
        if not journal.started or journal.shard_directory is None or journal.directory is None:
            raise OutboxNotStartedError("start the journal (Sequencer.open) before the publisher")
        if self._publish_task is not None:
            raise OutboxInvariantError("publisher started twice")
        self._epoch = journal.epoch
        self._epoch_suffix = epoch_override(self._epoch)
        self._cursor_path = journal.directory / PUBLISH_CURSOR_NAME
        self._round_fence = EpochFence(journal.shard_directory, self._epoch)
        self._cursor_fence = EpochFence(journal.shard_directory, self._epoch)
        cursor = read_cursor(self._cursor_path)
        # Segments before the journal's first seq were published (retention) or predate it.
        self._published_seq = self._cursor_seq = max(cursor, journal.first_seq - 1)
        loop = asyncio.get_running_loop()
        self._publish_task = loop.create_task(self._publish_loop())
        self._cursor_task = loop.create_task(self._cursor_loop())

    async def stop(self, *, drain_timeout_seconds: float = 0.0) -> None:
        """Stop publishing (after up to `drain_timeout_seconds` of catching up with the
        journal's durable end) and store the cursor one last time."""
        if drain_timeout_seconds > 0 and self.running:
            with contextlib.suppress(TimeoutError):
                await self.wait_published(
                    self.journal.durable_seq, timeout_seconds=drain_timeout_seconds
                )
        publish_task, cursor_task = self._publish_task, self._cursor_task
        if publish_task is not None:
            publish_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publish_task
        self._stopping = True  # the cursor task stores what was acknowledged, then ends
        self._progress.set()
        if cursor_task is not None:
            await cursor_task
        self._publish_task = self._cursor_task = None
        for fence in (self._round_fence, self._cursor_fence):
            if fence is not None:
                fence.close()
        self._round_fence = self._cursor_fence = None

    # ------------------------------------------------------------------ metrics

    @property
    def running(self) -> bool:
        task = self._publish_task
        return task is not None and not task.done()

    @property
    def published_seq(self) -> int:
        """Last engine_seq whose events the broker acknowledged (in memory)."""
        return self._published_seq

    @property
    def position(self) -> PublishedPosition | None:
        """The acknowledged position in the events partition (invariant 6)."""
        return self._position

    @property
    def cursor_seq(self) -> int:
        """Last engine_seq stored in the durable cursor (a restart resumes after it)."""
        return self._cursor_seq

    @property
    def lag_records(self) -> int:
        """Durable journal records (commands) not yet acknowledged by the broker."""
        return max(0, self.journal.durable_seq - self._published_seq)

    @property
    def file_records_count(self) -> int:
        """Records read back from the journal files (the publisher had fallen behind memory)."""
        return 0 if self._reader is None else self._reader.file_records_count

    async def wait_published(self, engine_seq: int, *, timeout_seconds: float) -> None:
        """Wait until every event up to `engine_seq` is acknowledged (TimeoutError if not)."""
        async with asyncio.timeout(timeout_seconds):
            while self._published_seq < engine_seq:
                if not self.running:
                    raise OutboxError(
                        f"publisher stopped at seq {self._published_seq} "
                        f"(fenced={self.fenced}, failure={self.failure!r})"
                    )
                self._progress.clear()
                await self._progress.wait()

    # ------------------------------------------------------------------ publishing

    async def _publish_loop(self) -> None:
        reader = self._reader = self.journal.reader(self._published_seq + 1)
        pending: list[WalRecord] = []  # the round in flight: sent again until acknowledged
        backoff_seconds = self.options.backoff_seconds_initial
        try:
            while True:
                producer: Any = None
                try:
                    producer = await self._connect()
                    while True:
                        if not pending:
                            pending = await self._next_round(reader)
                        self._check_fence()
                        next_offset = await self._publish_round(producer, pending)
                        self._acknowledged(pending, next_offset)
                        pending = []
                        backoff_seconds = self.options.backoff_seconds_initial
                except FencedError:
                    self.fenced = True
                    return
                except FATAL_ERRORS as error:
                    self.failure = error
                    return
                except Exception as error:  # noqa: BLE001  (any broker failure: reconnect, resend)
                    self.last_error = error
                    self.send_failures_count += 1
                    self.path.failed(error)
                finally:
                    if producer is not None:
                        await self._close_producer(producer)
                await asyncio.sleep(backoff_seconds)
                backoff_seconds = min(2 * backoff_seconds, self.options.backoff_seconds_max)
        finally:
            self._progress.set()  # wake waiters: the loop is gone

    async def _connect(self) -> Any:
        self._check_fence()
        options = self.options
        if options.create_topics and not self._topics_ready:
            await ensure_topics(
                options.bootstrap_servers,
                [options.events_topic, options.trade_events_topic],
                request_timeout_ms=options.request_timeout_ms,
            )
            self._topics_ready = True
        producer = AIOKafkaProducer(
            bootstrap_servers=options.bootstrap_servers,
            client_id=options.client_id,
            acks="all",
            enable_idempotence=False,
            max_batch_size=options.batch_bytes_max,
            max_request_size=options.batch_bytes_max + MIB,
            request_timeout_ms=options.request_timeout_ms,
            linger_ms=0,
        )
        try:
            await producer.start()
            self._partitions = {
                topic.name: sorted(await producer.partitions_for(topic.name))
                for topic in (options.events_topic, options.trade_events_topic)
            }
        except BaseException:
            await self._close_producer(producer)
            raise
        self.producer_starts_count += 1
        return producer

    async def _close_producer(self, producer: Any) -> None:
        timeout_seconds = self.options.request_timeout_ms / 1000 + 1
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(producer.stop(), timeout_seconds)

    async def _next_round(self, reader: JournalReader) -> list[WalRecord]:
        options = self.options
        while True:
            records = await reader.take(options.round_records_max, options.round_bytes_max)
            if records:
                return records
            await self.journal.wait_changed()

    def _check_fence(self) -> None:
        fence = self._round_fence
        if fence is None:
            raise OutboxNotStartedError("publisher not started")
        fence.check()

    def _partition_for(self, topic: str, key: bytes) -> int:
        partitions = self._partitions[topic]
        return int(self._partitioner(key, partitions, partitions))

    async def _publish_round(self, producer: Any, records: list[WalRecord]) -> int | None:
        """One batch per (topic, partition), then wait for every acknowledgement; returns the
        offset after the round's last record in the events partition (None: no event)."""
        events_topic = self.options.events_topic.name
        trade_topic = self.options.trade_events_topic.name
        events_partition = self._partition_for(events_topic, self._shard_key)
        batches: dict[tuple[str, int], Any] = {}
        event_count = 0

        def append(topic: str, partition: int, key: bytes, value: bytes) -> None:
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value) is None:
                raise OutboxInvariantError(
                    f"a round does not fit a {self.options.batch_bytes_max}-byte batch"
                )

        for record in records:
            suffix = b"" if record.epoch == self._epoch else self._epoch_suffix
            for event in decode_events(record.payload):
                value = event.envelope + suffix if suffix else event.envelope
                append(events_topic, events_partition, self._shard_key, value)
                event_count += 1
                if event.is_trade:
                    symbol_key = event.symbol.encode()
                    append(
                        trade_topic, self._partition_for(trade_topic, symbol_key), symbol_key, value
                    )
        futures = [
            await producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), batch in batches.items()
        ]
        acknowledged: list[Any] = []
        if futures:
            timeout_seconds = 2 * self.options.request_timeout_ms / 1000
            acknowledged = await asyncio.wait_for(asyncio.gather(*futures), timeout_seconds)
        self.events_published_count += event_count
        for key, metadata in zip(batches, acknowledged, strict=True):
            if key == (events_topic, events_partition):
                # The batch's base offset; every event of the round is one record of it.
                return int(metadata.offset) + event_count
        return None

    def _acknowledged(self, records: list[WalRecord], next_offset: int | None) -> None:
        self._published_seq = records[-1].seq
        self.path.succeeded()
        if next_offset is not None:
            self._position = PublishedPosition(
                engine_seq=self._published_seq,
                topic=self.options.events_topic.name,
                partition=self._partition_for(self.options.events_topic.name, self._shard_key),
                next_offset=next_offset,
            )
        self.rounds_count += 1
        self.records_published_count += len(records)
        self._progress.set()

    # ------------------------------------------------------------------ cursor

    async def _cursor_loop(self) -> None:
        """Stores the acknowledged seq (coalescing) and removes published journal segments."""
        while True:
            if self._published_seq <= self._cursor_seq:
                if self._stopping:
                    return
                self._progress.clear()
                await self._progress.wait()
                continue
            try:
                await self._save_cursor()
            except FencedError:
                self.fenced = True
                if self._publish_task is not None:
                    self._publish_task.cancel()
                return
            except OSError as error:
                self.last_error = error
                if self._stopping:
                    return
                await asyncio.sleep(self.options.backoff_seconds_max)

    async def _save_cursor(self) -> None:
        path, fence = self._cursor_path, self._cursor_fence
        if path is None or fence is None:
            raise OutboxNotStartedError("publisher not started")
        seq = self._published_seq
        await asyncio.to_thread(write_cursor, path, seq, fence)
        self._cursor_seq = seq
        if self.journal.segment_count > 1:
            self.segments_removed_count += await asyncio.to_thread(
                self.journal.remove_published_before, seq + 1
            )
