"""WebSocket frames (proto3 JSON) become typed events with Decimal amounts; client frames
are the documented JSON."""

from __future__ import annotations

import json
from decimal import Decimal

from exchange.websocket.v1 import websocket_pb2
from exchange_sdk import MarketCatalog, Side
from exchange_sdk.websocket import (
    BalanceEvent,
    FillEvent,
    RawEvent,
    TradeEvent,
    client_frame,
    parse_server_message,
    to_event,
)

from tests.unit.sdk.markets import BTC_USDT

CATALOG = MarketCatalog([BTC_USDT])


def test_trade_frame() -> None:
    frame = (
        '{"channel": "trades:BTC-USDT", "trade": {"trade": {"tradeId": "t1", "symbol": "BTC-USDT",'
        ' "price": "50000010000", "quantity": "2500000", "quoteQuantity": "1250000250",'
        ' "takerSide": "SIDE_SELL", "seq": "12"}}, "someFutureField": 1}'
    )
    event = to_event(parse_server_message(frame), CATALOG)
    assert isinstance(event, TradeEvent)
    assert event.trade.price == Decimal("50000.01")
    assert event.trade.quantity == Decimal("0.025")
    assert event.trade.taker_side is Side.SELL
    assert event.trade.seq == 12


def test_private_frames() -> None:
    fill = parse_server_message(
        '{"channel": "fills", "fill": {"tradeId": "t", "symbol": "BTC-USDT", "side": "SIDE_BUY",'
        ' "price": "50000000000", "quantity": "100000", "fee": "1000", "feeAsset": "USDT",'
        ' "remainingQuantity": "0"}}'
    )
    event = to_event(fill, CATALOG)
    assert isinstance(event, FillEvent)
    assert (event.price, event.quantity, event.fee) == (
        Decimal("50000"),
        Decimal("0.001"),
        Decimal("0.001"),
    )
    balance = to_event(
        parse_server_message(
            '{"channel": "balances", "balance": {"balance": {"asset": "USDT", "available": "5",'
            ' "held": "0"}, "engineSeq": "9"}}'
        ),
        CATALOG,
    )
    assert isinstance(balance, BalanceEvent)
    assert balance.balance.available == Decimal("0.000005")
    heartbeat = to_event(parse_server_message('{"heartbeat": {}}'), CATALOG)
    assert isinstance(heartbeat, RawEvent)
    assert heartbeat.kind == "heartbeat"


def test_client_frames_are_the_documented_json() -> None:
    message = websocket_pb2.ClientMessage(
        request_id="4",
        authenticate=websocket_pb2.Authenticate(
            api_key="KEY", timestamp_ms=1_700_000_000_000, signature="ab"
        ),
    )
    assert json.loads(client_frame(message)) == {
        "requestId": "4",
        "authenticate": {"apiKey": "KEY", "timestampMs": "1700000000000", "signature": "ab"},
    }
