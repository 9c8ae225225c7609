"""Round trip and strictness of the WAL command codec (core/sequencer/codec.py)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.engine import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    MarketMode,
    MarketSpec,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetMarketMode,
    Side,
    TimeInForce,
    Withdraw,
)
from core.engine.testing import btc_usdt_spec, limit_order
from core.sequencer import (
    CodecError,
    CommandEncodeError,
    MalformedPayloadError,
    UnknownCommandTypeError,
    UnknownFormatVersionError,
    decode_command,
    encode_command,
)
from core.sequencer.codec import (
    COMMAND_TAGS,
    FORMAT_VERSION,
    INT_BYTES_MAX,
    encode_command_generic,
)

# Ints across the whole range the codec carries (int64 and beyond, negatives included).
ints = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(
        min_value=-(2 ** (8 * INT_BYTES_MAX - 1)), max_value=2 ** (8 * INT_BYTES_MAX - 1) - 1
    ),
    st.sampled_from(
        [0, 1, -1, 127, 128, -128, -129, 255, 256, 2**63 - 1, -(2**63), -(2**127), 2**127 - 1]
    ),
)
texts = st.text(max_size=40)
timestamps = st.integers(min_value=0, max_value=2**64)

market_specs = st.builds(
    MarketSpec,
    symbol=texts,
    base_asset=texts,
    quote_asset=texts,
    base_scale=ints,
    quote_scale=ints,
    price_tick=ints,
    lot_step=ints,
    min_quantity=ints,
    max_quantity=ints,
    min_notional=ints,
    price_band_bps=ints,
    maker_fee_ppm=ints,
    taker_fee_ppm=ints,
    reference_price=ints,
)

COMMAND_STRATEGIES: dict[type[object], st.SearchStrategy[Command]] = {
    CreateAsset: st.builds(CreateAsset, asset=texts, scale=ints),
    CreateMarket: st.builds(CreateMarket, spec=market_specs),
    SetMarketMode: st.builds(SetMarketMode, symbol=texts, mode=st.sampled_from(MarketMode)),
    Deposit: st.builds(Deposit, account_id=texts, asset=texts, amount=ints, transfer_id=texts),
    Withdraw: st.builds(Withdraw, account_id=texts, asset=texts, amount=ints, transfer_id=texts),
    AdjustBalance: st.builds(
        AdjustBalance, account_id=texts, asset=texts, delta=ints, transfer_id=texts, memo=texts
    ),
    PlaceOrder: st.builds(
        PlaceOrder,
        account_id=texts,
        symbol=texts,
        side=st.sampled_from(Side),
        order_type=st.sampled_from(OrderType),
        quantity=ints,
        price=ints,
        quote_quantity=ints,
        time_in_force=st.sampled_from(TimeInForce),
        post_only=st.booleans(),
        self_trade_prevention=st.sampled_from(SelfTradePrevention),
        client_order_id=texts,
    ),
    CancelOrder: st.builds(CancelOrder, account_id=texts, order_id=ints, client_order_id=texts),
    CancelAllOrders: st.builds(CancelAllOrders, account_id=texts, symbol=texts),
    AmendOrder: st.builds(
        AmendOrder,
        account_id=texts,
        price=ints,
        quantity=ints,
        order_id=ints,
        client_order_id=texts,
    ),
}
commands = st.one_of(*COMMAND_STRATEGIES.values())


def test_strategies_cover_every_command_type() -> None:
    assert set(COMMAND_STRATEGIES) == set(COMMAND_TAGS)
    assert len(COMMAND_TAGS) == 10


@given(command=commands, timestamp_ns=timestamps)
def test_round_trip_of_every_command_type(command: Command, timestamp_ns: int) -> None:
    payload = encode_command(command, timestamp_ns=timestamp_ns)
    assert payload[0] == FORMAT_VERSION
    assert payload[1] == COMMAND_TAGS[type(command)]
    decoded = decode_command(payload)
    assert decoded.command == command
    assert type(decoded.command) is type(command)
    assert decoded.timestamp_ns == timestamp_ns
    assert encode_command(decoded.command, timestamp_ns=timestamp_ns) == payload  # canonical


@given(command=commands, timestamp_ns=timestamps)
def test_every_truncation_is_rejected(command: Command, timestamp_ns: int) -> None:
    payload = encode_command(command, timestamp_ns=timestamp_ns)
    for length in range(len(payload)):
        with pytest.raises(MalformedPayloadError if length >= 2 else CodecError):
            decode_command(payload[:length])


@given(command=commands)
def test_trailing_bytes_are_rejected(command: Command) -> None:
    payload = encode_command(command, timestamp_ns=1)
    with pytest.raises(MalformedPayloadError, match="trailing"):
        decode_command(payload + b"\x00")


def test_encoding_is_deterministic_and_compact() -> None:
    order = limit_order("alice", Side.BUY, 10_000, 50_000_000_000, client_order_id="c-1")
    payload = encode_command(order, timestamp_ns=1_700_000_000_000_000_000)
    assert payload == encode_command(order, timestamp_ns=1_700_000_000_000_000_000)
    assert len(payload) < 48
    spec_payload = encode_command(CreateMarket(spec=btc_usdt_spec()), timestamp_ns=0)
    assert decode_command(spec_payload).command == CreateMarket(spec=btc_usdt_spec())


def test_unknown_format_version_is_a_named_error() -> None:
    payload = bytearray(encode_command(CancelAllOrders(account_id="a"), timestamp_ns=5))
    for version in (0, 3, 255):
        payload[0] = version
        with pytest.raises(UnknownFormatVersionError, match=f"version {version}"):
            decode_command(bytes(payload))


def test_version_1_payloads_still_decode_with_empty_keys() -> None:
    """WALs written before request ids were logged (format 1) replay as unkeyed commands."""
    cases: list[Command] = [
        CancelOrder(account_id="a", order_id=7, client_order_id="c"),
        CancelAllOrders(account_id="a", symbol="BTC-USDT"),
        AmendOrder(account_id="a", price=5, quantity=3, order_id=7),
        SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED),
    ]
    for command in cases:
        version_2 = encode_command(command, timestamp_ns=9)
        keys = b"\x00\x00" if type(command) is SetMarketMode else b"\x00"  # empty strings
        assert version_2[0] == FORMAT_VERSION == 2
        assert version_2.endswith(keys)
        version_1 = bytes((1,)) + version_2[1 : len(version_2) - len(keys)]
        assert decode_command(version_1).command == command
        with pytest.raises(MalformedPayloadError):
            decode_command(version_1 + b"\x00")  # strict per version: no trailing keys


def test_keys_round_trip_in_version_2() -> None:
    cases: list[Command] = [
        CancelOrder(account_id="a", order_id=7, request_id="r-1"),
        CancelAllOrders(account_id="a", request_id="r-2"),
        AmendOrder(account_id="a", price=0, quantity=3, order_id=7, request_id="r-3"),
        SetMarketMode(
            symbol="BTC-USDT", mode=MarketMode.NORMAL, operator_id="op", request_id="r-4"
        ),
    ]
    for command in cases:
        payload = encode_command(command, timestamp_ns=9)
        assert payload == encode_command_generic(command, timestamp_ns=9)
        assert decode_command(payload).command == command


def test_unknown_command_tag_is_a_named_error() -> None:
    payload = bytearray(encode_command(CancelAllOrders(account_id="a"), timestamp_ns=5))
    for tag in (0, 11, 200):
        payload[1] = tag
        with pytest.raises(UnknownCommandTypeError, match=f"tag {tag}"):
            decode_command(bytes(payload))


def test_encoding_a_non_command_is_a_named_error() -> None:
    with pytest.raises(UnknownCommandTypeError):
        encode_command(btc_usdt_spec(), timestamp_ns=0)  # type: ignore[arg-type]


def _place_order_payload() -> bytes:
    order = PlaceOrder(account_id="a", symbol="S", side=Side.SELL, quantity=1, price=2)
    return encode_command(order, timestamp_ns=1)


def test_non_canonical_int_is_rejected() -> None:
    payload = _place_order_payload()
    assert payload[2:4] == b"\x01\x01"  # timestamp 1: length 1, byte 1
    with pytest.raises(MalformedPayloadError, match="non-canonical int"):
        decode_command(payload[:2] + b"\x02\x01\x00" + payload[4:])
    with pytest.raises(MalformedPayloadError, match="int length"):
        decode_command(payload[:2] + bytes([INT_BYTES_MAX + 1]) + payload[3:])


def test_bad_bool_enum_and_utf8_are_rejected() -> None:
    order = PlaceOrder(account_id="a", symbol="S", side=Side.SELL, quantity=1, price=2)
    payload = encode_command(order, timestamp_ns=1)
    # layout: ver, tag, ts(2), account(2), symbol(2), side(1), ...
    side_offset = 2 + 2 + 2 + 2
    assert payload[side_offset] == 1  # SELL
    with pytest.raises(MalformedPayloadError, match="enum code"):
        decode_command(payload[:side_offset] + b"\x07" + payload[side_offset + 1 :])
    # post_only sits right before self_trade_prevention and the client order id (empty)
    post_only_offset = len(payload) - 3
    assert payload[post_only_offset] == 0
    with pytest.raises(MalformedPayloadError, match="bool byte"):
        decode_command(payload[:post_only_offset] + b"\x02" + payload[post_only_offset + 1 :])
    account_offset = 4
    assert payload[account_offset : account_offset + 2] == b"\x01a"
    with pytest.raises(MalformedPayloadError, match="UTF-8"):
        decode_command(payload[: account_offset + 1] + b"\xff" + payload[account_offset + 2 :])
    with pytest.raises(MalformedPayloadError, match="non-canonical length"):
        decode_command(payload[:account_offset] + b"\x81\x00a" + payload[account_offset + 2 :])


def test_out_of_range_values_cannot_be_encoded() -> None:
    too_big = 2 ** (8 * INT_BYTES_MAX - 1)  # one past the largest signed 128-bit value
    with pytest.raises(CommandEncodeError, match="amount"):
        encode_command(
            Deposit(account_id="a", asset="B", amount=-too_big - 1, transfer_id=""), timestamp_ns=0
        )
    with pytest.raises(CommandEncodeError, match="amount"):
        encode_command(
            Deposit(account_id="a", asset="B", amount=too_big, transfer_id=""), timestamp_ns=0
        )
    with pytest.raises(CommandEncodeError, match="timestamp_ns"):
        encode_command(CancelAllOrders(account_id="a"), timestamp_ns=-1)
    with pytest.raises(CommandEncodeError, match="memo"):
        encode_command(
            AdjustBalance(account_id="a", asset="B", delta=1, transfer_id="", memo="x" * 70_000),
            timestamp_ns=0,
        )
    with pytest.raises(CommandEncodeError, match="side"):
        encode_command(
            PlaceOrder(account_id="a", symbol="S", side="BUY"),  # type: ignore[arg-type]
            timestamp_ns=0,
        )
    with pytest.raises(CommandEncodeError, match="quantity"):
        encode_command(
            dataclasses.replace(_decoded_order(), quantity=True),  # bool is not an int here
            timestamp_ns=0,
        )


def _decoded_order() -> PlaceOrder:
    command = decode_command(_place_order_payload()).command
    assert isinstance(command, PlaceOrder)
    return command
