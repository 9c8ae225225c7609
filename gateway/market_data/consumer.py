"""Feeds the projection and the WebSocket hub from the event log.

- `core.events.v1` (every core event; one partition per shard, key = shard id): every
  partition, assigned manually and read from offset 0 on every start. No consumer group:
  the projection is in-memory state rebuilt from the log, so there is no offset to commit
  (a committed offset would skip what the new process never saw), several gateways read
  the same events independently (a group would split them), and Tansu's first group join
  takes ~5 s. Not "latest" either: the book is the sum of every event, and Tansu's
  `end_offsets`/"latest" are wrong anyway (docs/adr/0011).
- `md.candles.v1`, `md.tickers.v1` (streaming/: EventEnvelope with `candle_updated` /
  `ticker_updated`, key = symbol): every partition from offset 0 too (state is latest-only,
  and nobody is subscribed while the backlog replays, so replaying publishes nothing).
- Topics that do not exist yet (the core has published nothing) are looked up again every
  `metadata_retry_seconds`; partitions that appear later are added from offset 0.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from exchange.events.v1 import envelope_pb2
from exchange.websocket.v1 import websocket_pb2

from gateway.fanout import Hub
from gateway.market_data.projection import MarketDataProjection, PublicUpdate, Update

_LOG = logging.getLogger(__name__)
CORE_EVENTS_TOPIC: Final = "core.events.v1"
CANDLES_TOPIC: Final = "md.candles.v1"
TICKERS_TOPIC: Final = "md.tickers.v1"
_INTERVAL_NAMES: Final = {1: "1m", 2: "5m", 3: "1h", 4: "1d"}


@dataclass(frozen=True)
class ConsumerOptions:
    bootstrap_servers: str
    topics: tuple[str, ...] = (CORE_EVENTS_TOPIC, CANDLES_TOPIC, TICKERS_TOPIC)
    poll_timeout_ms: int = 100
    metadata_retry_seconds: float = 1.0
    live_lag_ms: int = 2_000


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


class EventLogConsumer:
    """Reads the topics and applies them; `run()` until cancelled."""

    def __init__(
        self,
        options: ConsumerOptions,
        projection: MarketDataProjection,
        hub: Hub,
        *,
        on_update: Callable[[Update], None] | None = None,
    ) -> None:
        self._options = options
        self._projection = projection
        self._hub = hub
        self._on_update = on_update
        self.stats = ConsumerStats()

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._options.topics)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._options.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="exchange-gateway-market-data",
        )
        await consumer.start()
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
        positions = {tp: await consumer.position(tp) for tp in self.stats.assigned}
        consumer.assign(sorted(found))
        for topic_partition in found:
            consumer.seek(topic_partition, positions.get(topic_partition, 0))
        self.stats.assigned = found
        _LOG.info("market data: reading %s", sorted(f"{t.topic}/{t.partition}" for t in found))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        loop = asyncio.get_running_loop()
        next_lookup = 0.0
        wanted = len(self._options.topics)
        while True:
            topics_assigned = {tp.topic for tp in self.stats.assigned}
            if len(topics_assigned) < wanted and loop.time() >= next_lookup:
                await self._assign_new(consumer)
                next_lookup = loop.time() + self._options.metadata_retry_seconds
            if not self.stats.assigned:
                await asyncio.sleep(self._options.metadata_retry_seconds)
                continue
            polled = await consumer.getmany(timeout_ms=self._options.poll_timeout_ms)
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
