"""The codec's fast encoders give exactly the generic encoder's bytes (core/sequencer/codec.py).

The fast path is an optimisation only: for every command it takes, its bytes must equal the
schema walk's, and whatever it declines must still reach the generic path's named errors.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.engine import AmendOrder, CancelOrder, Command, PlaceOrder, Side
from core.sequencer import CommandEncodeError, decode_command, encode_command
from core.sequencer.codec import (
    CACHE_ENTRIES_MAX,
    FAST_ENCODERS,
    INT_BYTES_MAX,
    STRING_BYTES_MAX,
    FastPathUnavailable,
    encode_command_generic,
)
from tests.integration.core.sequencer.test_sequencer_codec import (
    COMMAND_STRATEGIES,
    ints,
    texts,
    timestamps,
)

INT_MAX = 2 ** (8 * INT_BYTES_MAX - 1) - 1
INT_MIN = -(2 ** (8 * INT_BYTES_MAX - 1))
# The round-trip test's strategies (short texts, ints over the whole range) ...
FAST_COMMANDS: dict[type[object], st.SearchStrategy[Command]] = {
    command_type: COMMAND_STRATEGIES[command_type]
    for command_type in (PlaceOrder, CancelOrder, AmendOrder)
}
# ... and strings long enough for multi-byte lengths, non-ASCII and surrogates included.
long_texts = st.text(min_size=100, max_size=400)
long_string_commands = st.one_of(
    st.builds(PlaceOrder, account_id=long_texts, symbol=long_texts, side=st.sampled_from(Side)),
    st.builds(CancelOrder, account_id=long_texts, client_order_id=long_texts),
    st.builds(AmendOrder, account_id=texts, price=ints, quantity=ints, client_order_id=long_texts),
)


def test_every_fast_encoder_is_tested() -> None:
    assert set(FAST_COMMANDS) == set(FAST_ENCODERS)


@given(command=st.one_of(*FAST_COMMANDS.values(), long_string_commands), timestamp_ns=timestamps)
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
