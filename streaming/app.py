"""The Quix Streams application: core.trade-events.v1 -> candles and tickers.

    core.trade-events.v1 [symbol] --(stateful apply: PartitionAggregator)--> outputs
        outputs: candle -> md.candles.v1 [symbol]   (CandleUpdated envelope)
                 ticker -> md.tickers.v1 [symbol]   (TickerUpdated envelope)
                 all    -> MarketDataSink: ClickHouse (trades, 1m candles), Redis (latest)

State: Quix's per-key state (RocksDB, changelog topic), key = the market's symbol; the
partition watermark lives under a reserved key of the same partition's store (reached
through the checkpoint's store transaction, as Quix's own stateful wrapper does).

Processing guarantee (docs/adr/0012): `exactly-once` by default: Quix's transactional
producer commits the output records, the changelog and the consumed offsets in one Kafka
transaction (verified against the local Tansu broker; readers use read_committed). Sinks
are flushed at every checkpoint before the commit: a crash between the two replays the
checkpoint, and the sinks are idempotent (ClickHouse ReplacingMergeTree + FINAL, Redis
version-guarded writes), so their query results are exactly once too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from quixstreams import Application, State, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Serializer
from quixstreams.sinks import BatchingSink, SinkBatch

from streaming.aggregation import (
    LATENESS_NS_DEFAULT,
    Candle,
    KeyValueState,
    PartitionAggregator,
    Ticker,
    Trade,
)
from streaming.codec import TradeDecodeError, candle_envelope, ticker_envelope, trade_from_envelope
from streaming.history import HistoryStore
from streaming.latest_state import LatestState

LOGGER: Final = logging.getLogger("streaming")

TRADE_EVENTS_TOPIC: Final = "core.trade-events.v1"
CANDLES_TOPIC: Final = "md.candles.v1"
TICKERS_TOPIC: Final = "md.tickers.v1"
CONSUMER_GROUP_DEFAULT: Final = "md-streaming"
RETENTION_MS_DEFAULT: Final = 7 * 24 * 3600 * 1000
PARTITION_STATE_KEY: Final = b"\x00partition"  # no symbol starts with a NUL byte

ProcessingGuarantee = Literal["exactly-once", "at-least-once"]


class Output(NamedTuple):
    """One result of a trade: `kind` is "trade", "candle" or "ticker"."""

    kind: str
    symbol: str
    envelope: bytes  # the CandleUpdated / TickerUpdated envelope (empty for trades)
    value: Trade | Candle | Ticker


class EnvelopeSerializer(Serializer):
    """An Output's envelope bytes, as the output topics carry them."""

    def __call__(self, value: Output, ctx: object = None) -> bytes:
        del ctx
        return value.envelope


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


class MarketDataSink(BatchingSink):
    """ClickHouse history and Redis latest state, written at every checkpoint (idempotent)."""

    def __init__(self, store: HistoryStore, latest: LatestState) -> None:
        super().__init__()
        self.store = store
        self.latest = latest
        self.batches_written = 0

    def setup(self) -> None:
        self.store.ensure_schema()
        self.latest.ping()

    def write(self, batch: SinkBatch) -> None:
        trades: list[Trade] = []
        candles: list[Candle] = []
        tickers: list[Ticker] = []
        for item in batch:
            output: Output = item.value
            if isinstance(output.value, Trade):
                trades.append(output.value)
            elif isinstance(output.value, Candle):
                candles.append(output.value)
            else:
                tickers.append(output.value)
        self.store.write(trades, candles)  # history first: Redis never runs ahead of it
        self.latest.write(candles, tickers)
        self.batches_written += 1


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


def _outputs(trade: Trade, partition: PartitionAggregator) -> list[Output]:
    outputs: list[Output] = []
    for updates in partition.apply(trade):
        if updates.trade is not None:
            outputs.append(Output("trade", trade.symbol, b"", updates.trade))
        outputs.extend(
            Output("candle", candle.symbol, candle_envelope(candle, cause=trade), candle)
            for candle in updates.candles
        )
        if updates.ticker is not None:
            ticker = updates.ticker
            outputs.append(
                Output("ticker", ticker.symbol, ticker_envelope(ticker, cause=trade), ticker)
            )
    return outputs


def _aggregate(sdf: StreamingDataFrame, lateness_ns: int) -> Callable[..., list[Output]]:
    """The stateful step: decode the trade, apply it, return its outputs."""

    def transaction_state(prefix: bytes) -> KeyValueState:
        transaction = sdf.processing_context.checkpoint.get_store_transaction(
            stream_id=sdf.stream_id, partition=message_context().partition
        )
        return _QuixState(transaction.as_state(prefix=prefix))

    def aggregate(
        value: bytes, _key: Any, _timestamp: int, _headers: Any, _state: State[str, Any]
    ) -> Any:
        try:
            trade = trade_from_envelope(value)
        except TradeDecodeError:
            LOGGER.exception("skipping an undecodable record at %s", message_context().offset)
            return []
        if trade is None:
            return []
        # Every market's state by its symbol (the record key is the symbol, so `state`, the
        # record key's own state, is the same store under the same prefix).
        partition = PartitionAggregator(
            market_state=lambda symbol: transaction_state(symbol.encode()),
            partition_state=transaction_state(PARTITION_STATE_KEY),
            lateness_ns=lateness_ns,
        )
        return _outputs(trade, partition)

    return aggregate


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
    candles_topic = app.topic(
        options.candles_topic,
        key_serializer="str",
        value_serializer=EnvelopeSerializer(),
        config=topic_config(),
    )
    tickers_topic = app.topic(
        options.tickers_topic,
        key_serializer="str",
        value_serializer=EnvelopeSerializer(),
        config=topic_config(),
    )
    sdf = app.dataframe(trades_topic)
    outputs = sdf.apply(
        _aggregate(sdf, options.lateness_ns), stateful=True, metadata=True, expand=True
    )
    candles = outputs.filter(lambda output: output.kind == "candle")
    candles.to_topic(candles_topic, key=lambda output: output.symbol)
    tickers = outputs.filter(lambda output: output.kind == "ticker")
    tickers.to_topic(tickers_topic, key=lambda output: output.symbol)
    outputs.sink(sink)
    return app, outputs
