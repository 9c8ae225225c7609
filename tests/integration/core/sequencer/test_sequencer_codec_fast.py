"""The codec's fast encoders give exactly the generic encoder's bytes (core/sequencer/codec.py).

The fast path is an optimisation only: for every command it takes, its bytes must equal the
schema walk's, and whatever it declines must still reach the generic path's named errors.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.engine import (
    AmendOrder,
    CancelOrder,
    Command,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.sequencer import CommandEncodeError, decode_command, encode_command
from core.sequencer.codec import (
    CACHE_ENTRIES_MAX,
    FAST_ENCODERS,
    INT_BYTES_MAX,
    STRING_BYTES_MAX,
    FastPathUnavailable,
    encode_command_generic,
)

INT_MAX = 2 ** (8 * INT_BYTES_MAX - 1) - 1
INT_MIN = -(2 ** (8 * INT_BYTES_MAX - 1))
ints = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.sampled_from([0, 1, -1, 127, 128, -128, -129, 255, 256, 2**63 - 1, INT_MIN, INT_MAX]),
)
# Short, long (multi-byte varint lengths) and non-ASCII strings, surrogates included.
texts = st.one_of(st.text(max_size=40), st.text(min_size=100, max_size=400))
timestamps = st.integers(min_value=0, max_value=2**64)

FAST_COMMANDS: dict[type[object], st.SearchStrategy[Command]] = {
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
    AmendOrder: st.builds(
        AmendOrder,
        account_id=texts,
        price=ints,
        quantity=ints,
        order_id=ints,
        client_order_id=texts,
    ),
}


def test_every_fast_encoder_is_tested() -> None:
    assert set(FAST_COMMANDS) == set(FAST_ENCODERS)


@given(command=st.one_of(*FAST_COMMANDS.values()), timestamp_ns=timestamps)
def test_fast_encoders_give_the_generic_bytes(command: Command, timestamp_ns: int) -> None:
    generic = encode_command_generic(command, timestamp_ns=timestamp_ns)
    # Called directly, so a silent fallback to the generic path cannot hide a difference.
    assert FAST_ENCODERS[type(command)](command, timestamp_ns) == generic
    assert encode_command(command, timestamp_ns=timestamp_ns) == generic
    assert decode_command(generic).command == command


def test_the_caches_do_not_change_bytes() -> None:
    order = PlaceOrder(account_id="é-1", symbol="BTC-USDT", side=Side.SELL, price=5, quantity=7)
    first = encode_command(order, timestamp_ns=9)
    for _ in range(3):
        assert encode_command(order, timestamp_ns=9) == first
    assert first == encode_command_generic(order, timestamp_ns=9)
    # More distinct values than the caches hold: they are cleared and refilled on the way.
    for index in range(2 * CACHE_ENTRIES_MAX + 3):
        command = PlaceOrder(
            account_id=f"account-{index % 5_000}",
            symbol="BTC-USDT",
            side=Side.BUY,
            price=index * 1_000 - 7,
            quantity=index % 3,
            quote_quantity=-index,
            client_order_id=f"c-{index}",
        )
        assert encode_command(command, timestamp_ns=index) == encode_command_generic(
            command, timestamp_ns=index
        )


@pytest.mark.parametrize(
    "command",
    [
        PlaceOrder(account_id="a", symbol="S", side="BUY"),  # type: ignore[arg-type]
        PlaceOrder(account_id="a", symbol="S", side=Side.BUY, quantity=True),
        PlaceOrder(account_id="a", symbol="S", side=Side.BUY, price=INT_MAX + 1),
        PlaceOrder(account_id="a", symbol="S", side=Side.BUY, client_order_id="x" * 70_000),
        CancelOrder(account_id="a", order_id=INT_MIN - 1),
        CancelOrder(account_id=Side.BUY),  # a str subclass is not a str here
        AmendOrder(account_id="a", price=1, quantity=1.5),  # type: ignore[arg-type]
    ],
)
def test_what_the_fast_path_declines_keeps_its_named_error(command: Command) -> None:
    with pytest.raises(FastPathUnavailable):
        FAST_ENCODERS[type(command)](command, 1)
    with pytest.raises(CommandEncodeError):
        encode_command(command, timestamp_ns=1)


def test_long_strings_up_to_the_limit_take_the_fast_path() -> None:
    order = CancelOrder(account_id="a", client_order_id="y" * STRING_BYTES_MAX)
    assert FAST_ENCODERS[CancelOrder](order, 3) == encode_command_generic(order, timestamp_ns=3)
