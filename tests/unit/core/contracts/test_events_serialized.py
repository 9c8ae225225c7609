"""The fast envelope path (`EnvelopeSerializer`, hand-written wire format around upb payloads)
against the reference path (`envelopes_for`, protobuf objects): random engine runs must give
byte-identical envelopes that parse to equal messages, with the same errors.

Hypothesis drives random command sequences (orders of every type, cancels, amends, funding,
mode changes, two markets, fills and self-trades) with random shard ids (multi-byte UTF-8,
> 127 bytes), epochs (0 and 64-bit), engine_seq gaps and timestamps (0, negative, 64-bit).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts.event_wire import EnvelopeSerializer, serialized_envelopes_for, varint
from core.contracts.events import (
    EnvelopeError,
    EventEnvelope,
    envelopes_for,
    market_specs_of,
)
from core.engine import (
    AdjustBalance,
    AmendOrder,
    ApplyResult,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    Engine,
    Event,
    MarketMode,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetMarketMode,
    Side,
    TimeInForce,
    Withdraw,
)
from core.engine.testing import BTC, USDT, btc_usdt_spec, limit_order
from core.sequencer.testing import btc_usdt_setup_commands

ACCOUNTS = ("alice", "bob", "carol", "dünya-ü")
SYMBOLS = ("BTC-USDT", "ETH-USDT")
PRICE = 50_000 * USDT
TICK = USDT // 100
LOT = BTC // 10_000

client_order_ids = st.sampled_from(("", "c1", "c2", "c3", "ü" * 40))
accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(SYMBOLS)
prices = st.integers(min_value=-2, max_value=2).map(lambda step: PRICE + step * 1_000 * TICK)
quantities = st.integers(min_value=1, max_value=300).map(lambda lots: lots * LOT)
order_ids = st.integers(min_value=0, max_value=60)

any_orders = st.builds(  # often refused: rejections carry the command's fields
    PlaceOrder,
    account_id=accounts,
    symbol=symbols,
    side=st.sampled_from(Side),
    order_type=st.sampled_from(OrderType),
    quantity=quantities,
    price=prices,
    quote_quantity=st.sampled_from((0, 0, 1_000 * USDT)),
    time_in_force=st.sampled_from(TimeInForce),
    post_only=st.booleans(),
    self_trade_prevention=st.sampled_from(SelfTradePrevention),
    client_order_id=client_order_ids,
)
limit_orders = st.builds(
    PlaceOrder,
    account_id=accounts,
    symbol=symbols,
    side=st.sampled_from(Side),
    order_type=st.just(OrderType.LIMIT),
    quantity=quantities,
    price=prices,
    time_in_force=st.sampled_from((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC)),
    self_trade_prevention=st.sampled_from(SelfTradePrevention),
    client_order_id=st.one_of(st.just(""), st.integers(0, 10**6).map(str)),
)
market_orders = st.builds(
    PlaceOrder,
    account_id=accounts,
    symbol=symbols,
    side=st.sampled_from(Side),
    order_type=st.just(OrderType.MARKET),
    quantity=quantities,
    time_in_force=st.just(TimeInForce.IOC),
    client_order_id=st.one_of(st.just(""), st.integers(0, 10**6).map(str)),
)
commands: st.SearchStrategy[Command] = st.one_of(
    *[limit_orders] * 6,  # mostly valid orders, so that books fill up and trade
    market_orders,
    any_orders,
    st.builds(
        CancelOrder, account_id=accounts, order_id=order_ids, client_order_id=client_order_ids
    ),
    st.builds(CancelAllOrders, account_id=accounts, symbol=st.sampled_from(("", *SYMBOLS))),
    st.builds(
        AmendOrder,
        account_id=accounts,
        price=prices,
        quantity=quantities,
        order_id=order_ids,
        client_order_id=client_order_ids,
    ),
    st.builds(
        Deposit,
        account_id=accounts,
        asset=st.sampled_from(("USDT", "BTC", "ETH", "XYZ")),
        amount=st.integers(min_value=-1, max_value=10**6 * USDT),
        transfer_id=st.sampled_from(("", "t1", "t2")),
    ),
    st.builds(
        Withdraw,
        account_id=accounts,
        asset=st.sampled_from(("USDT", "BTC")),
        amount=st.integers(min_value=1, max_value=10**4 * USDT),
        transfer_id=st.sampled_from(("", "w1")),
    ),
    st.builds(
        AdjustBalance,
        account_id=accounts,
        asset=st.sampled_from(("USDT", "BTC")),
        delta=st.integers(min_value=-(10**3) * USDT, max_value=10**3 * USDT),
        transfer_id=st.sampled_from(("", "a1")),
        memo=st.sampled_from(("", "fix", "ü")),
    ),
    st.builds(
        SetMarketMode,
        symbol=symbols,
        mode=st.sampled_from((*[MarketMode.NORMAL] * 3, *MarketMode)),
    ),
)
shard_ids = st.one_of(
    st.sampled_from(("shard-0", "s")), st.text(min_size=1, max_size=80).filter(str.isprintable)
)
epochs = st.one_of(st.sampled_from((0, 1, 127, 128)), st.integers(min_value=0, max_value=2**64 - 1))
timestamps = st.one_of(
    st.sampled_from((0, 1, -1, 1_700_000_000_000_000_000)),
    st.integers(min_value=-(2**62), max_value=2**63 - 1),
)


def setup_commands() -> list[Command]:
    eth_spec = btc_usdt_spec(symbol="ETH-USDT", base_asset="ETH", base_scale=8)
    result: list[Command] = [
        *btc_usdt_setup_commands(),
        CreateAsset(asset="ETH", scale=8),
        CreateMarket(spec=eth_spec),
    ]
    for account_id in ACCOUNTS:
        for asset, amount in (("USDT", 10**7 * USDT), ("BTC", 100 * BTC), ("ETH", 100 * BTC)):
            result.append(
                Deposit(
                    account_id=account_id,
                    asset=asset,
                    amount=amount,
                    transfer_id=f"seed-{asset}",
                )
            )
    return result


def assert_same(
    events: list[Event], *, shard_id: str, epoch: int, command: Command | None, engine: Engine
) -> list[bytes]:
    lookup = market_specs_of(engine)
    reference = envelopes_for(
        events, shard_id=shard_id, epoch=epoch, command=command, market_spec=lookup
    )
    fast = serialized_envelopes_for(
        events, shard_id=shard_id, epoch=epoch, command=command, market_spec=lookup
    )
    assert fast == [envelope.SerializeToString() for envelope in reference]
    assert [EventEnvelope.FromString(data) for data in fast] == reference
    return fast


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
@given(
    run=st.lists(
        st.tuples(commands, st.integers(min_value=1, max_value=3), timestamps),
        min_size=5,
        max_size=60,
    ),
    shard_id=shard_ids,
    epoch=epochs,
)
def test_random_engine_runs_serialize_identically(
    run: list[tuple[Command, int, int]], shard_id: str, epoch: int
) -> None:
    engine = Engine()
    engine_seq = 0
    for command in setup_commands():
        engine_seq += 1
        engine.apply(command, engine_seq=engine_seq, timestamp_ns=engine_seq)
    serializer = EnvelopeSerializer(
        shard_id=shard_id, epoch=epoch, market_spec=market_specs_of(engine)
    )
    applied: list[ApplyResult] = []
    for command, seq_step, timestamp_ns in run:
        engine_seq += seq_step
        result = engine.apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)
        applied.append(result)
        events = list(result.events)
        fast = assert_same(events, shard_id=shard_id, epoch=epoch, command=command, engine=engine)
        # the long-lived serializer (as the journal keeps it) agrees with a fresh one
        assert serializer(events, command=command) == fast
    # several commands at once, without their commands (the index restarts per command)
    every_event = [event for result in applied for event in result.events]
    assert_same(every_event, shard_id=shard_id, epoch=epoch, command=None, engine=engine)


def test_a_trade_and_its_fills_in_one_command() -> None:
    """A deterministic example that must contain a trade (the property may not)."""
    engine = Engine()
    commands_applied = [
        *setup_commands(),
        limit_order("alice", Side.SELL, BTC, PRICE, client_order_id="ask"),
        limit_order("bob", Side.BUY, 2 * BTC, PRICE, client_order_id="bid"),
    ]
    last: list[Event] = []
    for engine_seq, command in enumerate(commands_applied, start=1):
        last = list(engine.apply(command, engine_seq=engine_seq, timestamp_ns=engine_seq).events)
    fast = assert_same(
        last, shard_id="shard-ü", epoch=2**40, command=commands_applied[-1], engine=engine
    )
    assert any(EventEnvelope.FromString(data).HasField("trade_executed") for data in fast)


def test_errors_match_the_reference_path() -> None:
    engine = Engine()
    results: list[list[Event]] = []
    commands_applied = [
        *setup_commands(),
        limit_order("alice", Side.SELL, BTC, PRICE),
        limit_order("bob", Side.BUY, BTC, PRICE),
    ]
    for engine_seq, command in enumerate(commands_applied, start=1):
        results.append(
            list(engine.apply(command, engine_seq=engine_seq, timestamp_ns=engine_seq).events)
        )
    trade_events, earlier = results[-1], results[-2]
    with pytest.raises(EnvelopeError, match="market unknown"):
        serialized_envelopes_for(trade_events, shard_id="s", epoch=1)
    lookup = market_specs_of(engine)
    with pytest.raises(EnvelopeError, match="out of order"):
        serialized_envelopes_for(
            [*trade_events, *earlier], shard_id="s", epoch=1, market_spec=lookup
        )
    with pytest.raises(EnvelopeError, match="several commands"):
        serialized_envelopes_for(
            [*earlier, *trade_events],
            shard_id="s",
            epoch=1,
            command=commands_applied[-1],
            market_spec=lookup,
        )
    assert serialized_envelopes_for([], shard_id="s", epoch=1) == []


def upb_varint(value: int) -> bytes:
    """upb's varint of `value`: a uint64 field (`seq`, tag 0x20) serialized alone."""
    return EventEnvelope(seq=value).SerializeToString().removeprefix(b"\x20") or b"\x00"


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_matches_protobuf(value: int) -> None:
    assert varint(value) == upb_varint(value)


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35 - 1]
)
def test_varint_at_every_unrolled_boundary(value: int) -> None:
    assert varint(value) == upb_varint(value)
    assert varint(2**64 - 1) == upb_varint(2**64 - 1) == b"\xff" * 9 + b"\x01"


def test_varint_refuses_what_protobuf_cannot_hold() -> None:
    with pytest.raises(ValueError, match="varint"):
        varint(-1)
    with pytest.raises(ValueError, match="varint"):
        varint(2**64)
