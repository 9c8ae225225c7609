"""The streaming process (`python -m streaming`) against our Kafka-API broker (infra/broker,
ADR 0014, with transactions), a real Redis and embedded ClickHouse (chdb): trade events in
-> candles and tickers out on the topics, in Redis and in ClickHouse (read back through its
gRPC MarketDataService); SIGKILL mid-stream and restart -> exactly once in Redis, in
ClickHouse query results and on the output topics (read_committed); a replay from offset 0
into fresh stores rebuilds the same bytes. Expected values: the pure rules over the same
trades.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from exchange.events.v1 import envelope_pb2
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc, types_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common.topics import TopicSpec, ensure_topics
from infra.local.kafka_broker import LocalBroker
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from infra.local.streaming import StreamingProcess
from streaming.aggregation import Trade
from streaming.codec import candle_message, public_trade_message, ticker_message
from streaming.history import ChdbExecutor, HistoryStore
from streaming.latest_state import candle_key, ticker_key
from streaming.testing import Expected, expected_results, make_trades, trade_envelope

pytestmark = pytest.mark.slow

TRADE_TOPIC = "core.trade-events.v1"
FAST_COMMITS = ("--commit-interval-seconds", "0.2")


def publish(broker: LocalBroker, trades: list[Trade]) -> None:
    asyncio.run(
        ensure_topics(
            broker.bootstrap_servers, [TopicSpec(name=TRADE_TOPIC)], request_timeout_ms=5000
        )
    )
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all"})
    for trade in trades:
        producer.produce(TRADE_TOPIC, key=trade.symbol.encode(), value=trade_envelope(trade))
    if producer.flush(10) != 0:
        raise RuntimeError("trades not delivered")


def read_committed(
    broker: LocalBroker, topic: str, *, idle_seconds: float = 2.0, isolation: str = "read_committed"
) -> list[bytes]:
    """Every committed record of partition 0 of `topic` (read until idle)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": "test-reader",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_seconds:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            values.append(message.value())
            idle_since = time.monotonic()
    finally:
        consumer.close()
    return values


def wait_for_ticker(redis_url: str, symbol: str, seq: int, *, timeout_seconds: float = 60) -> None:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        raw = client.get(ticker_key(symbol))
        if isinstance(raw, bytes) and types_pb2.Ticker.FromString(raw).last_trade_seq >= seq:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the ticker of {symbol} did not reach seq {seq}")


def wait_until_caught_up(redis_url: str, trades: list[Trade]) -> None:
    for symbol in {trade.symbol for trade in trades}:
        wait_for_ticker(redis_url, symbol, max(t.seq for t in trades if t.symbol == symbol))


def assert_redis_holds(redis_url: str, expected: Expected) -> None:
    client = redis.Redis.from_url(redis_url)
    for symbol, ticker in expected.ticker.items():
        assert client.get(ticker_key(symbol)) == ticker_message(ticker).SerializeToString()
        candle = expected.latest_candle[symbol]
        assert client.get(candle_key(symbol)) == candle_message(candle).SerializeToString()


def list_all_trades(stub: marketdata_pb2_grpc.MarketDataServiceStub, symbol: str) -> list[int]:
    seqs: list[int] = []
    token = ""
    while True:
        page = stub.ListTrades(
            marketdata_pb2.ListTradesRequest(symbol=symbol, page_size=7, page_token=token)
        )
        seqs += [trade.seq for trade in page.trades]
        token = page.next_page_token
        if not token:
            return seqs


def assert_history_holds(listen: str, trades: list[Trade], expected: Expected) -> None:
    with grpc.insecure_channel(listen) as channel:
        stub = marketdata_pb2_grpc.MarketDataServiceStub(channel)
        for symbol in expected.ticker:
            mine = [trade for trade in trades if trade.symbol == symbol]
            assert list_all_trades(stub, symbol) == sorted((t.seq for t in mine), reverse=True)
            first = stub.ListTrades(marketdata_pb2.ListTradesRequest(symbol=symbol, page_size=1))
            assert first.trades[0] == public_trade_message(mine[-1])
            candles = stub.ListCandles(marketdata_pb2.ListCandlesRequest(symbol=symbol)).candles
            wanted = [c for key, c in sorted(expected.candles.items()) if key[0] == symbol]
            assert list(candles) == [candle_message(candle) for candle in wanted]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with (tmp_path / "broker.log").open("ab") as log, LocalBroker(log=log) as started:
        yield started


@pytest.fixture
def redis_pair() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def streaming(
    broker: LocalBroker, redis_url: str, directory: Path, *extra: str
) -> StreamingProcess:
    return StreamingProcess(
        broker=broker.bootstrap_servers,
        redis_url=redis_url,
        data_directory=directory,
        listen=f"127.0.0.1:{free_port()}",
        extra=(*FAST_COMMITS, *extra),
        log=(directory.parent / f"{directory.name}.log").open("ab"),
    )


def test_trades_become_candles_and_tickers_on_topics_in_redis_and_clickhouse(
    broker: LocalBroker, redis_pair: RedisServer, tmp_path: Path
) -> None:
    trades = make_trades(60)  # 7 s apart: 7 minutes, 2 markets
    expected = expected_results(trades)
    publish(broker, trades)
    process = streaming(broker, redis_pair.url, tmp_path / "streaming")
    process.start()
    try:
        wait_until_caught_up(redis_pair.url, trades)
        assert_redis_holds(redis_pair.url, expected)
        assert_history_holds(process.listen, trades, expected)
        with grpc.insecure_channel(process.listen) as channel:
            stub = marketdata_pb2_grpc.MarketDataServiceStub(channel)
            five = stub.ListCandles(
                marketdata_pb2.ListCandlesRequest(
                    symbol="BTC-USDT", interval=types_pb2.CANDLE_INTERVAL_5M, limit=1
                )
            ).candles
            btc = [t for t in trades if t.symbol == "BTC-USDT"]
            newest_bucket = btc[-1].executed_at_ns // (300 * 10**9) * 300 * 10**9
            in_bucket = [t for t in btc if t.executed_at_ns >= newest_bucket]
            (candle,) = five
            assert candle.interval == types_pb2.CANDLE_INTERVAL_5M
            assert candle.open == in_bucket[0].price
            assert candle.close == in_bucket[-1].price
            assert candle.volume == sum(t.quantity for t in in_bucket)
            assert not candle.final  # the market has no later candle yet
            with pytest.raises(grpc.RpcError) as invalid:
                stub.ListCandles(marketdata_pb2.ListCandlesRequest(symbol="BTC-USDT", limit=5000))
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(invalid.value)
            assert status is not None
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            assert info.reason == "FIELD_INVALID"
            with pytest.raises(grpc.RpcError) as unimplemented:
                stub.GetTicker(marketdata_pb2.GetTickerRequest(symbol="BTC-USDT"))
            assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        code = process.stop()
    assert code == 0  # SIGTERM: a clean stop
    tickers = [
        envelope_pb2.EventEnvelope.FromString(v) for v in read_committed(broker, "md.tickers.v1")
    ]
    candles = [
        envelope_pb2.EventEnvelope.FromString(v) for v in read_committed(broker, "md.candles.v1")
    ]
    assert_topics_hold(tickers, candles, expected)
    assert len({t.event_id for t in tickers}) == len(tickers)  # exactly once
    assert len({c.event_id for c in candles}) == len(candles)
    last = tickers[-1]
    assert last.producer == envelope_pb2.PRODUCER_MARKET_DATA
    assert last.WhichOneof("payload") == "ticker_updated"
    assert last.seq == last.ticker_updated.ticker.last_trade_seq == trades[-1].seq


def assert_topics_hold(
    tickers: list[envelope_pb2.EventEnvelope],
    candles: list[envelope_pb2.EventEnvelope],
    expected: Expected,
) -> None:
    """Conflated latest state: per market, ticker versions only grow (no crash left a dead
    transaction's records behind) and the newest is the expected ticker; the
    newest candle is the expected one; every final candle is there (any copies
    byte-identical); each event id names one value."""
    for symbol, ticker in expected.ticker.items():
        mine = [t for t in tickers if t.symbol == symbol]
        versions = [int(t.event_id.rsplit(":", 1)[1]) for t in mine]
        assert versions == sorted(set(versions))
        newest_ticker = mine[versions.index(max(versions))]
        assert newest_ticker.ticker_updated.ticker == ticker_message(ticker)
        assert newest_ticker.event_id == f"md:ticker:{symbol}:{ticker.version}"
        newest = max(
            (c for c in candles if c.symbol == symbol),
            key=lambda c: int(c.event_id.rsplit(":", 1)[1]),
        )
        assert newest.candle_updated.candle == candle_message(expected.latest_candle[symbol])
    finals = {c.event_id: c.candle_updated.candle for c in candles if c.candle_updated.candle.final}
    wanted = [c for c in expected.candles.values() if c.final]
    assert sorted(finals.values(), key=lambda c: (c.symbol, c.open_time.seconds)) == sorted(
        (candle_message(c) for c in wanted), key=lambda c: (c.symbol, c.open_time.seconds)
    )
    copies: dict[str, set[bytes]] = {}
    for envelope in [*tickers, *candles]:
        copies.setdefault(envelope.event_id, set()).add(envelope.SerializeToString())
    assert all(len(values) == 1 for values in copies.values())


def test_sigkill_mid_stream_then_restart_is_exactly_once_and_a_replay_rebuilds_the_same(
    broker: LocalBroker, redis_pair: RedisServer, tmp_path: Path
) -> None:
    trades = make_trades(1_500, spacing_ns=2 * 10**9)
    first, second = trades[:1_000], trades[1_000:]
    expected = expected_results(trades)
    publish(broker, first)
    process = streaming(broker, redis_pair.url, tmp_path / "streaming")
    process.start()
    wait_for_ticker(redis_pair.url, "BTC-USDT", 1)  # at least one checkpoint is in
    process.kill()  # SIGKILL, most likely mid-batch
    publish(broker, second)
    process.start()
    wait_until_caught_up(redis_pair.url, trades)
    assert_redis_holds(redis_pair.url, expected)
    assert_history_holds(process.listen, trades, expected)
    assert process.stop() == 0

    # The transaction the SIGKILL left open is aborted by the broker (its producer's
    # connections are gone, infra/broker/transactions.py): read_committed readers see
    # every output exactly once and in order, none of the killed transaction's records.
    assert_topics_hold(
        [envelope_pb2.EventEnvelope.FromString(v) for v in read_committed(broker, "md.tickers.v1")],
        [envelope_pb2.EventEnvelope.FromString(v) for v in read_committed(broker, "md.candles.v1")],
        expected,
    )

    store = HistoryStore(ChdbExecutor(tmp_path / "streaming" / "clickhouse"))
    try:
        assert store.executor.rows("SELECT count() FROM exchange.trades FINAL") == [[len(trades)]]
        assert store.executor.rows("SELECT count() FROM exchange.candles FINAL") == [
            [len(expected.candles)]
        ]
    finally:
        store.close()

    # Replay from offset 0: a new consumer group, fresh state and stores (Redis database 1).
    replay_url = redis_pair.url.removesuffix("/0") + "/1"
    replay = streaming(broker, replay_url, tmp_path / "replay", "--consumer-group", "md-replay")
    replay.start()
    try:
        wait_until_caught_up(replay_url, trades)
        assert_redis_holds(replay_url, expected)
        assert_history_holds(replay.listen, trades, expected)
    finally:
        code = replay.stop()
    assert code == 0
    original = redis.Redis.from_url(redis_pair.url)
    rebuilt = redis.Redis.from_url(replay_url)
    for symbol in expected.ticker:
        for key in (ticker_key(symbol), candle_key(symbol)):
            assert rebuilt.get(key) == original.get(key)
