"""The history store's SQL through the server backend (no ClickHouse server exists here: a
recording fake client checks the statements and parameters clickhouse-connect would send;
the same SQL runs for real on chdb in tests/integration/streaming), the request validation
of MarketDataService, the errors' ErrorInfo, the Redis key names and the envelope codec."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from exchange.common.v1 import errors_pb2
from exchange.events.v1 import envelope_pb2
from exchange.marketdata.v1 import marketdata_pb2, types_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from common import page_tokens
from streaming.aggregation import MINUTE_NS
from streaming.codec import candle_envelope, trade_from_envelope
from streaming.errors import StreamingServiceError
from streaming.history import CandleQuery, HistoryStore, ServerExecutor
from streaming.latest_state import candle_key, ticker_key, version_key
from streaming.service import candle_query, trades_page
from streaming.testing import expected_results, make_trades, trade_envelope


class RecordingClient:
    def __init__(self, rows: list[list[Any]] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rows = rows or []

    def command(self, sql: str, parameters: dict[str, Any]) -> None:
        self.calls.append((sql, parameters))

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        self.calls.append((sql, parameters))
        return type("Result", (), {"result_rows": self.rows})()

    def close(self) -> None:
        pass


def test_server_backend_creates_the_seed_tables() -> None:
    client = RecordingClient()
    HistoryStore(ServerExecutor("http://unused", client=client)).ensure_schema()
    statements = [sql for sql, _ in client.calls]
    trades, candles = statements[1], statements[2]
    assert "exchange.trades" in trades
    assert "PARTITION BY toDate(executed_at)" in trades
    assert "ORDER BY (symbol, executed_at, seq)" in trades
    assert "exchange.candles" in candles
    assert "PARTITION BY toDate(open_time)" in candles
    assert "ORDER BY (symbol, interval, open_time)" in candles
    assert all("ReplacingMergeTree(version)" in sql for sql in (trades, candles))


def test_server_backend_writes_the_newest_candle_version_and_escapes_strings() -> None:
    client = RecordingClient()
    trades = make_trades(4, symbols=("O'BRIEN-USDT",))
    expected = expected_results(trades)
    HistoryStore(ServerExecutor("http://unused", client=client)).write(
        trades, expected.candles.values()
    )
    (trade_insert, _), (candle_insert, _) = client.calls
    assert trade_insert.startswith("INSERT INTO exchange.trades")
    assert "'O\\'BRIEN-USDT'" in trade_insert
    assert candle_insert.count("'1m'") == len(expected.candles)


def test_server_backend_queries_candles_with_bound_parameters() -> None:
    bucket = 30 * MINUTE_NS
    client = RecordingClient(
        rows=[[bucket, 1, 3, 1, 2, 10, 20, 2, 5, 9, 1, bucket + 10 * MINUTE_NS]]
    )
    store = HistoryStore(ServerExecutor("http://unused", client=client))
    (candle,) = store.list_candles(CandleQuery("BTC-USDT", "5m", None, None, 10))
    sql, parameters = client.calls[0]
    assert "FROM exchange.candles FINAL" in sql
    assert "ORDER BY bucket DESC" in sql
    assert parameters == {
        "symbol": "BTC-USDT",
        "width": 300,
        "start_ns": 0,
        "end_ns": 2**63 - 1,
        "limit": 10,
    }
    assert (candle.open, candle.close, candle.volume, candle.final) == (1, 2, 10, True)
    assert candle.close_time_ns == bucket + 5 * MINUTE_NS


def test_a_derived_candle_is_not_final_without_a_later_candle() -> None:
    bucket = 30 * MINUTE_NS
    client = RecordingClient(rows=[[bucket, 1, 3, 1, 2, 10, 20, 2, 5, 9, 1, bucket + MINUTE_NS]])
    store = HistoryStore(ServerExecutor("http://unused", client=client))
    (candle,) = store.list_candles(CandleQuery("BTC-USDT", "5m", 0, None, 10))
    assert not candle.final


def _reason(error: StreamingServiceError) -> str:
    """ErrorInfo.reason of the status a client receives."""
    metadata = dict(error.grpc_status().trailing_metadata)
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    reason: str = info.reason
    return reason


@pytest.mark.parametrize(
    ("request_message", "reason"),
    [
        (marketdata_pb2.ListCandlesRequest(), "FIELD_INVALID"),
        (marketdata_pb2.ListCandlesRequest(symbol="BTC-USDT", limit=1001), "FIELD_INVALID"),
        (marketdata_pb2.ListCandlesRequest(symbol="BTC-USDT", interval=99), "FIELD_INVALID"),  # type: ignore[arg-type]
        (
            marketdata_pb2.ListCandlesRequest(
                symbol="BTC-USDT", start_time=Timestamp(seconds=10), end_time=Timestamp(seconds=5)
            ),
            "FIELD_INVALID",
        ),
    ],
)
def test_invalid_candle_requests_name_the_reason(
    request_message: marketdata_pb2.ListCandlesRequest, reason: str
) -> None:
    with pytest.raises(StreamingServiceError) as error:
        candle_query(request_message)
    assert _reason(error.value) == reason
    assert error.value.code == 3  # INVALID_ARGUMENT, as errors.proto declares


def test_candle_request_defaults() -> None:
    query = candle_query(marketdata_pb2.ListCandlesRequest(symbol="BTC-USDT"))
    assert (query.interval, query.limit, query.start_ns, query.end_ns) == ("1m", 500, None, None)
    hourly = candle_query(
        marketdata_pb2.ListCandlesRequest(
            symbol="BTC-USDT",
            interval=types_pb2.CANDLE_INTERVAL_1H,
            start_time=Timestamp(seconds=60),
        )
    )
    assert (hourly.interval, hourly.start_ns) == ("1h", 60 * 10**9)


@pytest.mark.parametrize("token", ["abc", "-1", "0", str(2**63)])
def test_a_foreign_page_token_is_refused(token: str) -> None:
    with pytest.raises(StreamingServiceError) as error:
        trades_page(marketdata_pb2.ListTradesRequest(symbol="BTC-USDT", page_token=token))
    assert error.value.reason == errors_pb2.ERROR_REASON_PAGE_TOKEN_INVALID
    assert _reason(error.value) == "PAGE_TOKEN_INVALID"


def test_trade_page_defaults() -> None:
    assert trades_page(marketdata_pb2.ListTradesRequest(symbol="X")) == (2**63, 100)
    assert trades_page(
        marketdata_pb2.ListTradesRequest(symbol="X", page_token=page_tokens.encode_number(42))
    ) == (42, 100)


def test_redis_keys_are_the_gateway_contract() -> None:
    assert ticker_key("BTC-USDT") == "md:ticker:BTC-USDT"
    assert candle_key("BTC-USDT") == "md:candle:BTC-USDT:1m"
    assert version_key(ticker_key("BTC-USDT")) == "md:version:ticker:BTC-USDT"
    assert version_key(candle_key("BTC-USDT")) == "md:version:candle:BTC-USDT:1m"


def test_trade_envelopes_round_trip_and_outputs_follow_the_contract() -> None:
    (trade,) = make_trades(1)
    assert trade_from_envelope(trade_envelope(trade)) == trade
    other = envelope_pb2.EventEnvelope(event_id="x", symbol="BTC-USDT", seq=1)
    assert trade_from_envelope(other.SerializeToString()) is None
    candle = next(iter(expected_results([trade]).candles.values()))
    envelope = envelope_pb2.EventEnvelope.FromString(candle_envelope(candle, cause=trade))
    assert envelope.producer == envelope_pb2.PRODUCER_MARKET_DATA
    assert (envelope.symbol, envelope.seq) == (trade.symbol, trade.seq)
    assert envelope.event_id == f"md:candle:{trade.symbol}:1m:{candle.open_time_ns}:2"
    assert envelope.causation_id == trade.event_id
    assert envelope.candle_updated.candle.last_trade_seq == trade.seq


def test_a_trade_without_a_seq_is_refused() -> None:
    (trade,) = make_trades(1)
    broken = replace(trade, seq=0)
    with pytest.raises(ValueError, match="lacks"):
        trade_from_envelope(trade_envelope(broken))
