"""Streaming market data end to end beside a raw consume of the same topic, same run.

    .venv/bin/python bench/streaming_bench.py [--trades 20000] [--runs 3]

Per run: a fresh Tansu broker (memory) and Redis; `--trades` TradeExecuted envelopes (two
markets, 1 s apart) are published to core.trade-events.v1 first. Then
1. raw: a plain confluent-kafka consumer (assigned, no group) reads every record;
2. streaming: `python -m streaming` (exactly-once, chdb) consumes the same topic; the rate
   counts from the first checkpoint seen in Redis (group join and start-up excluded) until
   both markets' tickers in Redis carry their last seq, i.e. candles, trades and tickers are
   in ClickHouse and Redis (the sink writes ClickHouse first). The newest candle is checked
   in ClickHouse through ListCandles against Redis.
Prints trades/s of both and the ratio per run (with the measured window: the app commits
once a second, so a window of one or two checkpoints bounds the figure by the commit
interval rather than by the app; more --trades give a steady-state figure), and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc, types_pb2

from common.topics import TopicSpec, ensure_topics
from infra.local.kafka_broker import LocalBroker
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from infra.local.streaming import StreamingProcess
from streaming.latest_state import candle_key, ticker_key
from streaming.testing import make_trades, trade_envelope

TOPIC = "core.trade-events.v1"
SYMBOLS = ("BTC-USDT", "ETH-USDT")


def publish(broker: LocalBroker, count: int) -> dict[str, int]:
    """Publish `count` trades; returns each market's last seq."""
    asyncio.run(
        ensure_topics(broker.bootstrap_servers, [TopicSpec(name=TOPIC)], request_timeout_ms=5000)
    )
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    last: dict[str, int] = {}
    for trade in make_trades(count, symbols=SYMBOLS, spacing_ns=10**9):
        producer.produce(TOPIC, key=trade.symbol.encode(), value=trade_envelope(trade))
        producer.poll(0)
        last[trade.symbol] = trade.seq
    producer.flush(30)
    return last


def raw_consume_rate(broker: LocalBroker, count: int) -> float:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "bench-raw"})
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    received = 0
    started = 0.0
    while received < count:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        if received == 0:
            started = time.perf_counter()
        received += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return (count - 1) / elapsed


def applied_trades(client: redis.Redis) -> int:
    total = 0
    for symbol in SYMBOLS:
        raw = client.get(ticker_key(symbol))
        if isinstance(raw, bytes):
            total += types_pb2.Ticker.FromString(raw).trade_count  # all within the 24h window
    return total


def caught_up(client: redis.Redis, last: dict[str, int]) -> bool:
    for symbol, seq in last.items():
        raw = client.get(ticker_key(symbol))
        if not isinstance(raw, bytes) or types_pb2.Ticker.FromString(raw).last_trade_seq < seq:
            return False
    return True


def streaming_rate(
    broker: LocalBroker,
    redis_server: RedisServer,
    directory: Path,
    count: int,
    last: dict[str, int],
) -> tuple[float, float]:
    """(trades/s, the measured window in seconds)."""
    process = StreamingProcess(
        broker=broker.bootstrap_servers,
        redis_url=redis_server.url,
        data_directory=directory,
        listen=f"127.0.0.1:{free_port()}",
        log=(directory.parent / "streaming.log").open("ab"),
    )
    client = redis.Redis.from_url(redis_server.url)
    process.start()
    try:
        while (first_applied := applied_trades(client)) == 0:
            time.sleep(0.01)
        started = time.perf_counter()
        while not caught_up(client, last):
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        with grpc.insecure_channel(process.listen) as channel:
            stub = marketdata_pb2_grpc.MarketDataServiceStub(channel)
            for symbol in SYMBOLS:
                (newest,) = stub.ListCandles(
                    marketdata_pb2.ListCandlesRequest(symbol=symbol, limit=1)
                ).candles
                stored = client.get(candle_key(symbol))
                if not isinstance(stored, bytes) or newest != types_pb2.Candle.FromString(stored):
                    raise SystemExit(f"ClickHouse and Redis disagree on {symbol}")
    finally:
        process.stop()
    return (count - first_applied) / elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    raw_rates: list[float] = []
    streaming_rates: list[float] = []
    for run in range(1, arguments.runs + 1):
        with LocalBroker() as broker, RedisServer() as redis_server:
            last = publish(broker, arguments.trades)
            raw = raw_consume_rate(broker, arguments.trades)
            with tempfile.TemporaryDirectory(prefix="streaming-bench-") as directory:
                streamed, window = streaming_rate(
                    broker, redis_server, Path(directory) / "streaming", arguments.trades, last
                )
        raw_rates.append(raw)
        streaming_rates.append(streamed)
        print(
            f"run {run}: raw consume {raw:,.0f} trades/s, streaming end to end "
            f"{streamed:,.0f} trades/s (window {window:.2f} s), ratio {streamed / raw:.3f}x"
        )
    raw_median = statistics.median(raw_rates)
    streaming_median = statistics.median(streaming_rates)
    ratios = sorted(s / r for s, r in zip(streaming_rates, raw_rates, strict=True))
    print(
        f"median of {arguments.runs}: raw consume {raw_median:,.0f} trades/s, streaming "
        f"{streaming_median:,.0f} trades/s, ratio (median of per-run) "
        f"{statistics.median(ratios):.3f}x"
    )


if __name__ == "__main__":
    main()
