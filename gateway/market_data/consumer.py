"""Feeds the projection and the WebSocket hub from the event log.

- `core.events.v1` (every core event; one partition per shard, key = shard id): every
  partition, assigned manually. No consumer group: the projection is in-memory state, so
  there is no offset to commit (a committed offset would skip what the new process never
  saw), several gateways read the same events independently (a group would split them),
  and Tansu's first group join takes ~5 s (docs/adr/0011).
- With a snapshot source (the core's GetProjectionSnapshot, docs/adr/0017) the shard's
  partition starts from the core's state at one engine seq: `MarketDataProjection.restore`,
  then the partition is read from the snapshot's `resume_offset`, an offset at or before
  the first record of any later event (the events read again are skipped by their stream
  seqs). A snapshot without a known offset (the core has acknowledged no round since it
  started) is asked for again every `snapshot_retry_seconds`, and so is one whose offset
  the log no longer holds (`OffsetOutOfRangeError`: retention deleted it; or a position
  past the partition's high watermark for `beyond_end_seconds`: the topic was recreated),
  at start or later: the gateway never serves a gap. The consumer's
  `auto_offset_reset` is "none" for that reason: an offset out of range is an error,
  never a silent jump. Without a snapshot source every partition is read from its first
  offset (tests and tools that write the log themselves).
- `md.candles.v1`, `md.tickers.v1` (streaming/: EventEnvelope with `candle_updated` /
  `ticker_updated`, key = symbol): every partition from offset 0 too (state is latest-only,
  and nobody is subscribed while the backlog replays, so replaying publishes nothing).
- Topics that do not exist yet (the core has published nothing) are looked up again every
  `metadata_retry_seconds`; partitions that appear later are added from their first
  offset, and so is a latest-state partition (`md.*`) whose position retention deleted.
- While the backlog replays (before the consumer is caught up), trades and private updates
  (orders, fills, balances) are applied but not pushed to WebSocket clients: they are
  history, and a client connected to a restarted gateway must not get old fills as new.
  Book diffs always go out (they keep a subscriber's book exact and chain from its
  snapshot); candles and tickers are latest-state anyway. Caught up = `core.events.v1` is
  assigned and a poll came back empty or a batch's newest record is younger than
  `live_lag_ms` (with a busy log a poll is never empty; Tansu's end offsets cannot be
  asked).
- Each fetched batch is applied as a whole (`MarketDataProjection.apply_all`), then every
  resulting update is published into the hub: no await between the projection's change
  and the hub's publish, so a book subscription's snapshot and the diffs after it chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError
from exchange.events.v1 import envelope_pb2
from exchange.websocket.v1 import websocket_pb2

from common.topics import CANDLES_TOPIC, CORE_EVENTS_TOPIC, TICKERS_TOPIC
from gateway.fanout import Hub
from gateway.market_data.projection import (
    MarketDataProjection,
    ProjectionSnapshot,
    PublicUpdate,
    Update,
)

_LOG = logging.getLogger(__name__)
_INTERVAL_NAMES: Final = {1: "1m", 2: "5m", 3: "1h", 4: "1d"}
SnapshotSource = Callable[[], Awaitable[ProjectionSnapshot]]


@dataclass(frozen=True)
class ConsumerOptions:
    bootstrap_servers: str
    topics: tuple[str, ...] = (CORE_EVENTS_TOPIC, CANDLES_TOPIC, TICKERS_TOPIC)
    poll_timeout_ms: int = 100
    metadata_retry_seconds: float = 1.0
    live_lag_ms: int = 2_000
    snapshot_retry_seconds: float = 1.0
    beyond_end_seconds: float = 2.0


@dataclass
class ConsumerStats:
    batches: int = 0
    records: int = 0
    undecodable: int = 0
    # True once `core.events.v1` is read and a poll came back empty or brought records
    # younger than `live_lag_ms`: from then on, updates are pushed to WebSocket clients.
    caught_up: bool = False
    # Trade and private updates of the replayed backlog, applied but not pushed.
    withheld: int = 0
    assigned: set[TopicPartition] = field(default_factory=set)
    # Snapshots taken (1 at start; more when the log no longer held the position) and the
    # engine seq and partition offset of the last one.
    snapshots: int = 0
    snapshot_engine_seq: int = 0
    snapshot_offset: int = -1
    # Snapshots refused: offset not known yet, or no longer in the log.
    snapshots_retried: int = 0


class EventLogConsumer:
    """Reads the topics and applies them; `run()` until cancelled."""

    def __init__(
        self,
        options: ConsumerOptions,
        projection: MarketDataProjection,
        hub: Hub,
        *,
        on_update: Callable[[Update], None] | None = None,
        snapshots: SnapshotSource | None = None,
    ) -> None:
        self._options = options
        self._projection = projection
        self._hub = hub
        self._on_update = on_update
        self._snapshots = snapshots
        self._snapshot_partition: TopicPartition | None = None
        self._beyond_end_since: float | None = None
        self.stats = ConsumerStats()

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._options.topics)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._options.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="none",
            client_id="exchange-gateway-market-data",
        )
        await consumer.start()
        # A new consumer has no assignment: after a failure every partition is assigned
        # again, and the shard's from a new snapshot.
        self.stats.assigned = set()
        self._snapshot_partition = None
        try:
            await self._consume(consumer)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _assign_new(self, consumer: AIOKafkaConsumer) -> None:
        found = set(self.stats.assigned)
        try:
            # Every topic's metadata: the consumer's own refresh covers assigned topics only.
            cluster = await consumer._client.fetch_all_metadata()  # no public equivalent
        except Exception:  # noqa: BLE001 - the broker may be away: look again later
            _LOG.warning("market data: broker metadata unavailable", exc_info=True)
            return
        for topic in self._options.topics:
            for partition in sorted(cluster.partitions_for_topic(topic) or ()):
                found.add(TopicPartition(topic, partition))
        new = found - self.stats.assigned
        if not new:
            return
        await self._assign(consumer, found, {})
        _LOG.info("market data: reading %s", sorted(f"{t.topic}/{t.partition}" for t in found))

    async def _assign(
        self,
        consumer: AIOKafkaConsumer,
        partitions: set[TopicPartition],
        positions: dict[TopicPartition, int],
    ) -> None:
        """Assigns `partitions`: each at `positions`, else where it was, else offset 0."""
        for topic_partition in self.stats.assigned:
            if topic_partition not in positions:
                positions[topic_partition] = await consumer.position(topic_partition)
        consumer.assign(sorted(partitions))
        for topic_partition in partitions:
            if topic_partition in positions:
                consumer.seek(topic_partition, positions[topic_partition])
            else:
                consumer.seek(topic_partition, 0)  # retention: out of range, then its start
        self.stats.assigned = set(partitions)

    async def _start_from_snapshot(self, consumer: AIOKafkaConsumer) -> None:
        """Restores the projection from a snapshot whose resume offset is known and reads
        its partition from there; asks again until one is."""
        source = self._snapshots
        if source is None:
            return
        while True:
            try:
                snapshot = await source()
            except Exception:  # noqa: BLE001 - the core may be away: ask again
                _LOG.warning("market data: no snapshot from the core", exc_info=True)
                self.stats.snapshots_retried += 1
                await asyncio.sleep(self._options.snapshot_retry_seconds)
                continue
            # Nothing sequenced yet: the log's start is before any event. Else the offset
            # must be known: a guessed one could lie after an event of the state's future.
            if snapshot.resume_offset >= 0 or snapshot.engine_seq == 0:
                break
            _LOG.info("market data: snapshot at %d has no resume offset yet", snapshot.engine_seq)
            self.stats.snapshots_retried += 1
            await asyncio.sleep(self._options.snapshot_retry_seconds)
        topic_partition = TopicPartition(snapshot.events_topic, snapshot.events_partition)
        offset = max(snapshot.resume_offset, 0)
        self.publish(self._projection.restore(snapshot))
        self._snapshot_partition = topic_partition
        await self._assign(
            consumer, self.stats.assigned | {topic_partition}, {topic_partition: offset}
        )
        self.stats.snapshots += 1
        self.stats.snapshot_engine_seq = snapshot.engine_seq
        self.stats.snapshot_offset = offset
        _LOG.info(
            "market data: snapshot at engine seq %d, reading %s/%d from offset %d",
            snapshot.engine_seq,
            topic_partition.topic,
            topic_partition.partition,
            offset,
        )

    async def _poll(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]] | None:
        """One fetch; None when a position had left the log (handled: a new snapshot, or the
        partition's start)."""
        try:
            polled: dict[TopicPartition, list[Any]] = await consumer.getmany(
                timeout_ms=self._options.poll_timeout_ms
            )
        except OffsetOutOfRangeError as error:
            await self._out_of_range(consumer, error)
            return None
        if self._snapshot_partition is not None and self._snapshot_partition not in polled:
            lost = await self._beyond_end(consumer, self._snapshot_partition)
            if lost is not None:
                await self._out_of_range(consumer, lost)
                return None
        return polled

    async def _beyond_end(
        self, consumer: AIOKafkaConsumer, topic_partition: TopicPartition
    ) -> OffsetOutOfRangeError | None:
        """A position past the partition's end (the high watermark of the fetches) for
        `beyond_end_seconds` is out of range too: the log was truncated or recreated, and a
        broker may answer such a fetch with nothing instead of OFFSET_OUT_OF_RANGE (Tansu
        does). Not at once: right after a seek the watermark is the previous fetch's."""
        highwater = consumer.highwater(topic_partition)
        position = await consumer.position(topic_partition)
        now = asyncio.get_running_loop().time()
        if highwater is None or position <= highwater:
            self._beyond_end_since = None
            return None
        if self._beyond_end_since is None:
            self._beyond_end_since = now
        if now - self._beyond_end_since < self._options.beyond_end_seconds:
            return None
        self._beyond_end_since = None
        return OffsetOutOfRangeError({topic_partition: position})

    async def _out_of_range(self, consumer: AIOKafkaConsumer, error: OffsetOutOfRangeError) -> None:
        """The log no longer holds a position: a new snapshot for the snapshot's partition,
        the partition's start for the others (latest-state or not started from a snapshot)."""
        lost: dict[TopicPartition, int] = error.args[0] if error.args else {}
        for topic_partition in lost:
            if topic_partition == self._snapshot_partition:
                _LOG.warning("market data: %s left the log; taking a new snapshot", lost)
                self.stats.snapshots_retried += 1
                await self._start_from_snapshot(consumer)
            else:
                await consumer.seek_to_beginning(topic_partition)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        loop = asyncio.get_running_loop()
        next_lookup = 0.0
        wanted = len(self._options.topics)
        if self._snapshots is not None:
            await self._start_from_snapshot(consumer)
        while True:
            topics_assigned = {tp.topic for tp in self.stats.assigned}
            if len(topics_assigned) < wanted and loop.time() >= next_lookup:
                await self._assign_new(consumer)
                next_lookup = loop.time() + self._options.metadata_retry_seconds
            if not self.stats.assigned:
                await asyncio.sleep(self._options.metadata_retry_seconds)
                continue
            polled = await self._poll(consumer)
            if polled is None:
                continue
            # The core's events decide: the md.* topics are latest-state and may not exist.
            reading_core = any(tp.topic == CORE_EVENTS_TOPIC for tp in self.stats.assigned)
            if not polled:
                self.stats.caught_up = self.stats.caught_up or reading_core
                continue
            if not self.stats.caught_up and reading_core:
                newest_ms = max(records[-1].timestamp for records in polled.values())
                now_ms = time.time_ns() // 1_000_000
                self.stats.caught_up = now_ms - newest_ms <= self._options.live_lag_ms
            for topic_partition, records in polled.items():
                self.stats.batches += 1
                self.stats.records += len(records)
                envelopes = []
                for record in records:
                    envelope = envelope_pb2.EventEnvelope()
                    try:
                        envelope.ParseFromString(record.value or b"")
                    except Exception:  # noqa: BLE001 - a foreign record is counted, not fatal
                        self.stats.undecodable += 1
                        continue
                    envelopes.append(envelope)
                if topic_partition.topic == CORE_EVENTS_TOPIC:
                    self.publish(self._projection.apply_all(envelopes))
                else:
                    self.publish(market_data_updates(envelopes, self._projection))

    def publish(self, updates: list[Update]) -> None:
        live = self.stats.caught_up
        for update in updates:
            if isinstance(update, PublicUpdate):
                if live or not update.channel.startswith("trades:"):
                    self._hub.publish(update.channel, update.message)
                else:
                    self.stats.withheld += 1
            elif live:
                self._hub.publish_private(update.kind, update.account_id, update.message)
            else:
                self.stats.withheld += 1
            if self._on_update is not None:
                self._on_update(update)


def market_data_updates(
    envelopes: list[envelope_pb2.EventEnvelope], projection: MarketDataProjection
) -> list[Update]:
    """Candle and ticker envelopes (streaming/) as `candles:<SYMBOL>:<interval>` and
    `ticker:<SYMBOL>` messages (a ticker's best bid/ask from the projected book, as
    GetTicker answers); anything else on those topics is ignored."""
    updates: list[Update] = []
    for envelope in envelopes:
        kind = envelope.WhichOneof("payload")
        message = websocket_pb2.ServerMessage()
        if kind == "candle_updated":
            candle = envelope.candle_updated.candle
            interval = _INTERVAL_NAMES.get(candle.interval)
            if interval is None:
                continue
            message.candle.candle.CopyFrom(candle)
            updates.append(PublicUpdate(f"candles:{candle.symbol}:{interval}", message))
        elif kind == "ticker_updated":
            ticker = envelope.ticker_updated.ticker
            message.ticker.ticker.CopyFrom(ticker)
            book = projection.book(ticker.symbol)
            if book is not None:
                message.ticker.ticker.best_bid = book.best(1)
                message.ticker.ticker.best_ask = book.best(2)
            updates.append(PublicUpdate(f"ticker:{ticker.symbol}", message))
    return updates
