"""The settlement consumer: core.events.v1 (Kafka API) -> Settlement, offsets in PostgreSQL.

- Partitions are assigned explicitly (one partition per core shard, docs/adr/0004); no
  consumer group membership, so nothing depends on the broker's group coordinator (slow on
  Tansu) and several consumers can split the partitions between them.
- On start, and after any conflict, each partition is read from the offset PostgreSQL holds
  (`consumer_offsets`), never from the broker's committed offsets or "latest".
- Pipelined: while one poll is written, the next is fetched, parsed and planned in the
  planner's process (ledger/batch_planner.py: ready COPY text, on another core); posting
  stays strictly in order.
- Each poll's records of one partition are posted in ONE transaction together with the offset
  they advance to (`Settlement.post(..., offsets=...)`). A crash before the commit loses the
  transaction, the offset included, and the records are read again; a redelivered record is a
  duplicate by its stream position and posts nothing.
- A record that is not a valid core event stops the consumer (`LedgerError` or
  `DecodeError` propagates): nothing after it is posted and nothing is skipped silently;
  the service then exits (ledger/service.py), so that it is seen as down, not "running".
- A failing dependency does not stop it: when PostgreSQL or the broker fails (a restart, a
  dropped connection), the round is dropped, the failure logged, and after a back-off
  (0.1 s doubling to 5 s) the consumer re-reads its stored offsets and goes on. Whether the
  failed transaction committed or not, the stored offsets say where to resume, and a record
  posted twice is a duplicate by its stream position (found by the crash campaign,
  tests/chaos: a PostgreSQL restart used to end settlement for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Final

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.batch_planner import BatchPlanner, ReadyBatch
from ledger.db.offsets import OffsetAdvance, OffsetConflictError, stored_offsets
from ledger.settlement import Settlement

CORE_EVENTS_TOPIC: Final = "core.events.v1"
CONSUMER_GROUP: Final = "ledger-settlement"
# What a failing dependency raises (the round is retried); anything else stops the consumer.
# The planner process holds its own connection: it raises psycopg's errors, and a planner
# that cannot connect at start breaks its pool (replaced on the next plan).
DEPENDENCY_ERRORS: Final = (
    DBAPIError,
    PoolTimeoutError,
    psycopg.OperationalError,
    BrokenProcessPool,
    KafkaError,
    OSError,
)
BACKOFF_INITIAL_SECONDS: Final = 0.1
BACKOFF_MAX_SECONDS: Final = 5.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    bootstrap_servers: str
    partitions: Sequence[int]
    topic: str = CORE_EVENTS_TOPIC
    consumer_group: str = CONSUMER_GROUP
    batch_records_max: int = 2_000
    poll_timeout_ms: int = 200


@dataclass(frozen=True, slots=True)
class _PartitionBatch:
    partition: int
    next_offset: int
    ready: ReadyBatch


class SettlementConsumer:
    """Reads the assigned partitions and posts them; `run` until `stop` is set."""

    def __init__(
        self,
        settlement: Settlement,
        engine: AsyncEngine,
        options: ConsumerOptions,
        *,
        on_batch: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> None:
        self._settlement = settlement
        self._engine = engine
        self._options = options
        self._on_batch = on_batch
        self._consumer: AIOKafkaConsumer | None = None
        self._planner: BatchPlanner | None = None
        self._positions: dict[int, int] = {}
        self.events_posted = 0
        self.batches_by_plan = 0  # posted by the planner's COPY plan (the rest: general path)
        self.dependency_failures = 0  # rounds dropped because PostgreSQL or the broker failed

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._options.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._options.batch_records_max,
        )
        self._planner = BatchPlanner(self._engine.url.render_as_string(hide_password=False))
        await consumer.start()
        consumer.assign(
            [
                TopicPartition(self._options.topic, partition)
                for partition in self._options.partitions
            ]
        )
        self._consumer = consumer
        await self._seek_to_stored()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._planner is not None:
            await asyncio.to_thread(self._planner.close)
            self._planner = None

    async def _seek_to_stored(self) -> None:
        if self._consumer is None:
            raise RuntimeError("start() the consumer first")
        stored = await stored_offsets(
            self._engine, self._options.consumer_group, self._options.topic
        )
        for partition in self._options.partitions:
            self._positions[partition] = stored.get(partition, 0)
            self._consumer.seek(
                TopicPartition(self._options.topic, partition), self._positions[partition]
            )

    async def _fetch(self) -> list[_PartitionBatch]:
        """One poll, parsed and planned (in the planner process), per partition in order."""
        if self._consumer is None or self._planner is None:
            raise RuntimeError("start() the consumer first")
        polled = await self._consumer.getmany(
            timeout_ms=self._options.poll_timeout_ms,
            max_records=self._options.batch_records_max,
        )
        batches = []
        for topic_partition, records in sorted(polled.items(), key=lambda item: item[0].partition):
            if records:
                values = [record.value or b"" for record in records]
                ready = await self._planner.plan(values)
                batches.append(
                    _PartitionBatch(topic_partition.partition, records[-1].offset + 1, ready)
                )
        return batches

    async def _post(self, batches: list[_PartitionBatch]) -> bool:
        """Post each partition's batch in its own transaction; False after an offset conflict
        (the consumer re-seeks to the stored offsets, and what was fetched is dropped)."""
        for batch in batches:
            advance = OffsetAdvance(
                self._options.consumer_group,
                self._options.topic,
                batch.partition,
                self._positions[batch.partition],
                batch.next_offset,
            )
            try:
                posted = await self._settlement.post_ready(batch.ready, offsets=[advance])
            except OffsetConflictError:
                await self._seek_to_stored()
                return False
            self._positions[batch.partition] = advance.to_offset
            self.events_posted += posted.events
            self.batches_by_plan += posted.by_plan
            if self._on_batch is not None:
                await self._on_batch(batch.partition, advance.to_offset)
        return True

    async def poll_once(self) -> int:
        """One poll, posted (one transaction per partition). Returns the events posted."""
        batches = await self._fetch()
        if not await self._post(batches):
            return 0
        return sum(len(batch.ready.values) for batch in batches)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and post until `stop` is set. Pipelined: the next poll is fetched, parsed and
        planned while the current one is written; posting stays in order per partition.
        A failing dependency drops the round and resumes from the stored offsets."""
        ready: list[_PartitionBatch] = []
        backoff = BACKOFF_INITIAL_SECONDS
        reseek = False  # after a failure nothing is posted before the stored offsets are read
        while not stop.is_set():
            try:
                if reseek:
                    await self._seek_to_stored()
                    reseek = False
                ready = await self._round(ready)
            except DEPENDENCY_ERRORS as error:
                self.dependency_failures += 1
                _log.warning(
                    "settlement round failed (%r); resuming from the stored offsets in %.1fs",
                    error,
                    backoff,
                )
                ready, reseek = [], True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(BACKOFF_MAX_SECONDS, backoff * 2)
            else:
                backoff = BACKOFF_INITIAL_SECONDS
        if not reseek:
            await self._post(ready)

    async def _round(self, ready: list[_PartitionBatch]) -> list[_PartitionBatch]:
        """Posts `ready` while the next poll is fetched; returns that poll."""
        fetching = asyncio.create_task(self._fetch())
        try:
            posted = await self._post(ready)
        except BaseException:
            fetching.cancel()
            raise
        fetched = await fetching
        return fetched if posted else []  # after a re-seek, what was fetched is stale

    async def __aenter__(self) -> SettlementConsumer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
