"""The Quix Streams application: core.trade-events.v1 -> candles and tickers.

    core.trade-events.v1 [symbol] --(MarketDataSink.add: PartitionAggregator, per record)
        checkpoint (MarketDataSink.flush, per partition, before Quix commits):
            state   -> the partition's Quix store transaction (changed keys only)
            history -> ClickHouse: the checkpoint's trades, the newest version of each candle
            latest  -> Redis: the newest candle and ticker per market
            topics  -> md.candles.v1 [symbol]: every final candle + the newest in-progress one
                       md.tickers.v1 [symbol]: the newest ticker per market

Per record the app only decodes the trade and runs the pure rules over a write-back cache
(`WriteBackState`) of the market's Quix state; everything else happens once per checkpoint.
**Conflation:** the output topics carry latest state, so an in-progress candle and a ticker
are emitted once per market per checkpoint (the newest version), not once per trade; every
final candle is emitted (once). Versions and event ids are those of the rules, so an
emitted record is byte-identical to the one a per-trade emitter would have produced for
the same version.

State: Quix's per-key state (RocksDB, changelog topic), prefix = the market's symbol; the
partition watermark lives under a reserved prefix of the same partition's store. The store
is registered on the dataframe (`register_store`) and reached through the checkpoint's store
transaction, as Quix's own stateful wrapper does.

Processing guarantee (docs/adr/0012): `exactly-once` by default. Quix commits a checkpoint
as: flush sinks (this sink writes state, ClickHouse, Redis and produces its output records)
-> produce the state changelog -> flush the producer -> commit the Kafka transaction with
the consumed offsets. Outputs, changelog and offsets are therefore one transaction; a crash
before its commit replays the checkpoint from the last committed state, and ClickHouse
(ReplacingMergeTree + FINAL) and Redis (version-guarded writes) are idempotent. The sink's
buffers belong to one checkpoint: a checkpoint that ends without committing (partition
lost, aborted) has its buffers discarded, never written later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from quixstreams import Application, State
from quixstreams.checkpointing import Checkpoint
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import TopicConfig
from quixstreams.processing import ProcessingContext
from quixstreams.sinks import BaseSink
from quixstreams.state.base import PartitionTransaction

from common.topics import CANDLES_TOPIC, TICKERS_TOPIC, TRADE_EVENTS_TOPIC
from streaming.aggregation import (
    LATENESS_NS_DEFAULT,
    Candle,
    PartitionAggregator,
    Ticker,
    Trade,
    WriteBackState,
)
from streaming.codec import TradeDecodeError, candle_envelope, ticker_envelope, trade_from_envelope
from streaming.history import HistoryStore
from streaming.latest_state import LatestState

LOGGER: Final = logging.getLogger("streaming")

CONSUMER_GROUP_DEFAULT: Final = "md-streaming"
RETENTION_MS_DEFAULT: Final = 7 * 24 * 3600 * 1000
PARTITION_STATE_KEY: Final = b"\x00partition"  # no symbol starts with a NUL byte

ProcessingGuarantee = Literal["exactly-once", "at-least-once"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamingOptions:
    broker: str
    state_directory: Path
    consumer_group: str = CONSUMER_GROUP_DEFAULT
    processing_guarantee: ProcessingGuarantee = "exactly-once"
    commit_interval_seconds: float = 1.0
    lateness_ns: int = LATENESS_NS_DEFAULT
    output_partitions: int = 1
    retention_ms: int = RETENTION_MS_DEFAULT
    trade_events_topic: str = TRADE_EVENTS_TOPIC
    candles_topic: str = CANDLES_TOPIC
    tickers_topic: str = TICKERS_TOPIC
    consumer_extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Caused:
    """An output value and the trade that caused it (its envelope's cause fields)."""

    value: Candle | Ticker
    cause: Trade


class _QuixState:
    """A Quix `State` seen through the rules' KeyValueState protocol."""

    __slots__ = ("_state",)

    def __init__(self, state: State[str, Any]) -> None:
        self._state = state

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._state.set(key, value)

    def delete(self, key: str) -> None:
        self._state.delete(key)


class _PartitionCheckpoint:
    """One input partition's work in one checkpoint: the rules over write-back caches of
    its state, and the outputs so far (newest version per candle and per ticker)."""

    def __init__(self, transaction: PartitionTransaction[Any, Any], lateness_ns: int) -> None:
        self.transaction = transaction
        self.markets: dict[str, WriteBackState] = {}
        self.partition_state = WriteBackState(
            _QuixState(transaction.as_state(prefix=PARTITION_STATE_KEY))
        )
        self.aggregator = PartitionAggregator(
            market_state=self.market_state,
            partition_state=self.partition_state,
            lateness_ns=lateness_ns,
        )
        self.trades: list[Trade] = []
        self.candles: dict[tuple[str, int], _Caused] = {}
        self.tickers: dict[str, _Caused] = {}

    def market_state(self, symbol: str) -> WriteBackState:
        state = self.markets.get(symbol)
        if state is None:
            backing = _QuixState(self.transaction.as_state(prefix=symbol.encode()))
            state = self.markets[symbol] = WriteBackState(backing)
        return state

    def apply(self, trade: Trade) -> None:
        for updates in self.aggregator.apply(trade):
            if updates.trade is not None:
                self.trades.append(updates.trade)
            for candle in updates.candles:  # versions only grow: the later one is newer
                self.candles[(candle.symbol, candle.open_time_ns)] = _Caused(candle, trade)
            if updates.ticker is not None:
                self.tickers[trade.symbol] = _Caused(updates.ticker, trade)

    def write_state(self) -> None:
        """Put the changed keys into the checkpoint's store transaction (before Quix
        prepares it: the changelog and the offsets then commit with them)."""
        for symbol, state in self.markets.items():
            state.write_to(_QuixState(self.transaction.as_state(prefix=symbol.encode())))
        self.partition_state.write_to(
            _QuixState(self.transaction.as_state(prefix=PARTITION_STATE_KEY))
        )


class MarketDataSink(BaseSink):
    """The per-record aggregation and the per-checkpoint outputs (see the module header).

    `bind` (build_application) gives it the dataframe's processing context, its stream id
    and the options (lateness, output topics).
    """

    def __init__(self, store: HistoryStore, latest: LatestState) -> None:
        super().__init__()
        self.store = store
        self.latest = latest
        self.lateness_ns = LATENESS_NS_DEFAULT
        self.candles_topic = CANDLES_TOPIC
        self.tickers_topic = TICKERS_TOPIC
        self.checkpoints_written = 0
        self._context: ProcessingContext | None = None
        self._stream_id = ""
        self._checkpoint: object = None
        self._partitions: dict[int, _PartitionCheckpoint] = {}

    def bind(self, sdf: StreamingDataFrame, options: StreamingOptions) -> None:
        self._context = sdf.processing_context
        self._stream_id = sdf.stream_id
        self.lateness_ns = options.lateness_ns
        self.candles_topic = options.candles_topic
        self.tickers_topic = options.tickers_topic

    def setup(self) -> None:
        self.store.ensure_schema()
        self.latest.ping()

    def _current(self) -> Checkpoint:
        if self._context is None:
            raise RuntimeError("MarketDataSink.bind was not called")
        checkpoint = self._context.checkpoint
        if checkpoint is not self._checkpoint:
            if self._partitions:
                LOGGER.warning(
                    "discarding %d partitions of a checkpoint that did not commit",
                    len(self._partitions),
                )
            self._partitions = {}
            self._checkpoint = checkpoint
        return checkpoint

    def add(  # noqa: PLR0917 - Quix's BaseSink signature
        self,
        value: Any,
        key: Any,
        timestamp: int,
        headers: Any,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        del key, timestamp, headers
        checkpoint = self._current()
        work = self._partitions.get(partition)
        if work is None:
            transaction = checkpoint.get_store_transaction(
                stream_id=self._stream_id, partition=partition
            )
            work = self._partitions[partition] = _PartitionCheckpoint(transaction, self.lateness_ns)
        try:
            trade = trade_from_envelope(value)
        except TradeDecodeError:
            LOGGER.exception(
                "skipping an undecodable record at %s[%d]@%d", topic, partition, offset
            )
            return
        if trade is not None:
            work.apply(trade)

    def flush(self) -> None:
        """At the checkpoint: state, then ClickHouse, Redis and the output records."""
        if self._context is None:
            return
        self._current()
        partitions, self._partitions = self._partitions, {}
        if not partitions:
            return
        trades: list[Trade] = []
        candles: list[_Caused] = []
        tickers: list[_Caused] = []
        for work in partitions.values():
            work.write_state()
            trades += work.trades
            candles += work.candles.values()
            tickers += work.tickers.values()
        candle_values = [cast(Candle, caused.value) for caused in candles]
        ticker_values = [cast(Ticker, caused.value) for caused in tickers]
        self.store.write(trades, candle_values)  # history first: Redis never runs ahead of it
        self.latest.write(candle_values, ticker_values)
        records = [
            (self.candles_topic, value.symbol, candle_envelope(value, cause=caused.cause))
            for caused, value in zip(candles, candle_values, strict=True)
        ] + [
            (self.tickers_topic, value.symbol, ticker_envelope(value, cause=caused.cause))
            for caused, value in zip(tickers, ticker_values, strict=True)
        ]
        for topic, symbol, envelope in records:
            self._context.producer.produce(topic=topic, key=symbol.encode(), value=envelope)
        self.checkpoints_written += 1


def build_application(
    options: StreamingOptions, *, sink: MarketDataSink
) -> tuple[Application, StreamingDataFrame]:
    """The Quix application, its topics (created with explicit configs) and its pipeline."""
    app = Application(
        broker_address=options.broker,
        consumer_group=options.consumer_group,
        auto_offset_reset="earliest",
        processing_guarantee=options.processing_guarantee,
        commit_interval=options.commit_interval_seconds,
        state_dir=str(options.state_directory),
        # Tansu's first group join waits for the session timeout: keep it short.
        consumer_extra_config={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            **options.consumer_extra,
        },
        loglevel="INFO",
    )

    def topic_config() -> TopicConfig:
        return TopicConfig(
            num_partitions=options.output_partitions,
            replication_factor=1,
            extra_config={"retention.ms": str(options.retention_ms), "cleanup.policy": "delete"},
        )

    trades_topic = app.topic(
        options.trade_events_topic,
        key_deserializer="bytes",
        value_deserializer="bytes",
        config=topic_config(),  # used only if the core has not created it yet
    )
    # The output topics are created with explicit configs at start; MarketDataSink produces
    # their records (bytes: key = symbol, value = envelope) in the checkpoint's transaction.
    app.topic(options.candles_topic, config=topic_config())
    app.topic(options.tickers_topic, config=topic_config())
    sdf = app.dataframe(trades_topic)
    sdf.register_store()  # the per-partition RocksDB state + changelog the sink works on
    sink.bind(sdf, options)
    sdf.sink(sink)
    return app, sdf
