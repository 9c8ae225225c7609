"""Representative messages survive proto3 JSON (the REST form) with exact amounts."""

from __future__ import annotations

import json

import pytest
from exchange.common.v1 import types_pb2
from exchange.events.v1 import envelope_pb2
from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange.trading.v1 import trading_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# 2^53 + 1 is the first integer a JSON number parsed as a double gets wrong.
BEYOND_DOUBLE = 2**53 + 1


def _place_order() -> Message:
    return trading_pb2.PlaceOrderRequest(
        client_order_id="c-1",
        symbol="BTC-USDT",
        side=types_pb2.SIDE_BUY,
        order_type=types_pb2.ORDER_TYPE_LIMIT,
        time_in_force=types_pb2.TIME_IN_FORCE_GTC,
        price=50_000_123_456,
        quantity=BEYOND_DOUBLE,
    )


def _trade_event() -> Message:
    envelope = envelope_pb2.EventEnvelope(
        event_id="shard-0:9:1",
        event_version=1,
        symbol="BTC-USDT",
        seq=INT64_MAX,
        engine_seq=2**64 - 1,
        epoch=1,
        shard_id="shard-0",
    )
    trade = envelope.trade_executed
    trade.trade_id = "T-9"
    trade.price = INT64_MAX
    trade.quantity = BEYOND_DOUBLE
    trade.quote_quantity = INT64_MAX - 1
    trade.maker_fee = 1
    trade.taker_fee = 2
    return envelope


def _journal_entry() -> Message:
    return ledger_types_pb2.JournalEntry(
        entry_id="E-1",
        kind=ledger_types_pb2.ENTRY_KIND_DEPOSIT,
        postings=[
            ledger_types_pb2.Posting(
                account=ledger_types_pb2.LedgerAccount(
                    owner_id="alice",
                    asset="BTC",
                    kind=ledger_types_pb2.ACCOUNT_KIND_AVAILABLE,
                ),
                amount=INT64_MAX,
            ),
            ledger_types_pb2.Posting(
                account=ledger_types_pb2.LedgerAccount(
                    owner_id="exchange",
                    asset="BTC",
                    kind=ledger_types_pb2.ACCOUNT_KIND_EXTERNAL,
                ),
                amount=-INT64_MAX,
            ),
        ],
    )


def _candle() -> Message:
    return marketdata_types_pb2.Candle(
        symbol="BTC-USDT",
        interval=marketdata_types_pb2.CANDLE_INTERVAL_1M,
        open=1,
        high=INT64_MAX,
        low=1,
        close=BEYOND_DOUBLE,
        volume=INT64_MAX,
        final=True,
    )


@pytest.mark.parametrize("make", [_place_order, _trade_event, _journal_entry, _candle])
def test_json_round_trip_is_exact(make: object) -> None:
    assert callable(make)
    original: Message = make()
    text = json_format.MessageToJson(original, preserving_proto_field_name=True)
    parsed = json_format.Parse(text, type(original)())
    assert parsed == original


def test_int64_amounts_are_json_strings() -> None:
    document = json.loads(
        json_format.MessageToJson(_place_order(), preserving_proto_field_name=True)
    )
    assert document["quantity"] == str(BEYOND_DOUBLE)
    assert document["price"] == "50000123456"
    # The same number as a JSON number would not survive a double-based parser:
    assert int(float(BEYOND_DOUBLE)) != BEYOND_DOUBLE


def test_negative_postings_round_trip() -> None:
    document = json.loads(json_format.MessageToJson(_journal_entry()))
    assert [posting["amount"] for posting in document["postings"]] == [
        str(INT64_MAX),
        str(-INT64_MAX),
    ]


def test_json_refuses_a_fractional_amount() -> None:
    # A decimal on the wire is a client bug: the parser refuses it rather than truncating.
    with pytest.raises(json_format.ParseError):
        json_format.Parse('{"price": "50000.5"}', trading_pb2.PlaceOrderRequest())
    with pytest.raises(json_format.ParseError):
        json_format.Parse('{"price": 1.5}', trading_pb2.PlaceOrderRequest())


def test_json_refuses_an_amount_beyond_int64() -> None:
    with pytest.raises(json_format.ParseError):
        json_format.Parse(f'{{"price": "{INT64_MAX + 1}"}}', trading_pb2.PlaceOrderRequest())
