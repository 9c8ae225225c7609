"""Engine events -> EventEnvelope: every field of the envelope, every event type, determinism."""

from __future__ import annotations

import pytest
from exchange.common.v1 import errors_pb2, types_pb2
from exchange.events.v1 import core_events_pb2, envelope_pb2

from core.contracts.events import (
    EVENT_VERSION,
    EnvelopeError,
    EventEnvelope,
    envelopes_for,
    market_specs_of,
)
from core.engine import (
    AdjustBalance,
    AmendOrder,
    ApplyResult,
    CancelOrder,
    Command,
    Deposit,
    Event,
    MarketMode,
    SetMarketMode,
    Side,
    Withdraw,
)
from core.engine.testing import BTC, USDT, EngineDriver, limit_order, market_order
from core.sequencer.testing import btc_usdt_setup_commands

SHARD = "shard-7"
EPOCH = 3
PRICE = 50_000 * USDT
LOT = BTC // 10_000


class Recorder:
    """Drives an engine and converts each command's events the way the outbox does."""

    def __init__(self) -> None:
        self.driver = EngineDriver()
        self.results: list[tuple[Command, ApplyResult]] = []

    def apply(self, command: Command) -> list[EventEnvelope]:
        result = self.driver.apply(command)
        self.results.append((command, result))
        return envelopes_for(
            result.events,
            shard_id=SHARD,
            epoch=EPOCH,
            command=command,
            market_spec=market_specs_of(self.driver.engine),
        )


@pytest.fixture
def recorder() -> Recorder:
    recorder = Recorder()
    for command in btc_usdt_setup_commands():
        recorder.apply(command)
    for account_id in ("alice", "bob"):
        for asset, amount in (("USDT", 1_000_000 * USDT), ("BTC", 100 * BTC)):
            recorder.apply(
                Deposit(account_id=account_id, asset=asset, amount=amount, transfer_id=asset)
            )
    return recorder


def payload_of(envelope: EventEnvelope) -> str:
    name = envelope.WhichOneof("payload")
    assert name is not None
    return name


def test_metadata_of_every_envelope(recorder: Recorder) -> None:
    envelopes = recorder.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="buy-1"))
    engine_seq = recorder.driver.engine_seq_last
    timestamp_ns = recorder.driver.timestamp_ns
    assert [payload_of(envelope) for envelope in envelopes] == ["order_accepted", "funds_reserved"]
    for index, envelope in enumerate(envelopes):
        assert envelope.event_id == f"{SHARD}:{engine_seq}:{index}"
        assert envelope.event_version == EVENT_VERSION == 1
        assert envelope.symbol == "BTC-USDT"
        assert envelope.occurred_at.ToNanoseconds() == timestamp_ns
        assert envelope.correlation_id == "order:alice:buy-1"
        assert envelope.causation_id == f"{SHARD}:{engine_seq}"
        assert (envelope.epoch, envelope.engine_seq, envelope.shard_id) == (
            EPOCH,
            engine_seq,
            SHARD,
        )
        assert envelope.producer == envelope_pb2.PRODUCER_CORE
    assert [envelope.seq for envelope in envelopes] == [
        event.seq for event in recorder.results[-1][1].events
    ]
    assert envelopes[1].seq == envelopes[0].seq + 1  # gap-free per market stream


def test_order_accepted_and_reservation_payloads(recorder: Recorder) -> None:
    accepted, reserved = recorder.apply(
        limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="buy-1")
    )
    order_id = str(recorder.driver.engine_seq_last)
    assert accepted.order_accepted == core_events_pb2.OrderAccepted(
        order_id=order_id,
        client_order_id="buy-1",
        account_id="alice",
        side=types_pb2.SIDE_BUY,
        order_type=types_pb2.ORDER_TYPE_LIMIT,
        time_in_force=types_pb2.TIME_IN_FORCE_GTC,
        price=PRICE,
        quantity=BTC,
        quote_quantity=0,
        post_only=False,
        self_trade_prevention=types_pb2.SELF_TRADE_PREVENTION_CANCEL_NEWEST,
    )
    funds = reserved.funds_reserved
    assert (funds.account_id, funds.asset, funds.order_id) == ("alice", "USDT", order_id)
    assert funds.amount == 50_100 * USDT  # notional + taker fee (0.2%)


def test_trade_payload_carries_assets_and_taker_client_order_id(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.SELL, BTC, PRICE, client_order_id="ask-1"))
    maker_id = recorder.driver.engine_seq_last
    envelopes = recorder.apply(
        limit_order("bob", Side.BUY, 2 * BTC, PRICE, client_order_id="bid-1")
    )
    taker_id = recorder.driver.engine_seq_last
    trades = [envelope for envelope in envelopes if payload_of(envelope) == "trade_executed"]
    assert len(trades) == 1
    trade = trades[0].trade_executed
    assert (trade.base_asset, trade.quote_asset) == ("BTC", "USDT")
    assert (trade.price, trade.quantity, trade.quote_quantity) == (PRICE, BTC, 50_000 * USDT)
    assert trade.taker_side == types_pb2.SIDE_BUY
    assert (trade.maker_order_id, trade.taker_order_id) == (str(maker_id), str(taker_id))
    assert (trade.maker_account_id, trade.taker_account_id) == ("alice", "bob")
    assert (trade.taker_client_order_id, trade.maker_client_order_id) == ("bid-1", "")
    assert (trade.maker_fee, trade.taker_fee) == (50 * USDT, 100 * USDT)
    assert (trade.maker_remaining_quantity, trade.taker_remaining_quantity) == (0, BTC)
    assert trade.trade_id == str(recorder.driver.engine.trade_id_last)
    assert trades[0].correlation_id == "order:bob:bid-1"


def test_ioc_remainder_expires_with_its_filled_quantity(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    envelopes = recorder.apply(market_order("bob", Side.BUY, quantity=3 * BTC, client_order_id="m"))
    expired = [envelope for envelope in envelopes if payload_of(envelope) == "order_expired"]
    assert len(expired) == 1
    payload = expired[0].order_expired
    assert (payload.client_order_id, payload.account_id) == ("m", "bob")
    assert (payload.filled_quantity, payload.expired_quantity) == (BTC, 2 * BTC)
    assert payload.reason == types_pb2.CANCEL_REASON_MARKET_ORDER_REMAINDER


def test_cancel_by_client_order_id(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1"))
    cancelled, released = recorder.apply(CancelOrder(account_id="alice", client_order_id="c-1"))
    assert payload_of(released) == "funds_released"
    payload = cancelled.order_cancelled
    assert (payload.client_order_id, payload.cancelled_quantity) == ("c-1", BTC)
    assert payload.reason == types_pb2.CANCEL_REASON_USER_REQUESTED
    assert cancelled.correlation_id == "order:alice:c-1"  # the order's request chain


def test_cancel_by_order_id_has_no_client_order_id_and_the_command_id(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1"))
    order_id = recorder.driver.engine_seq_last
    cancelled, _ = recorder.apply(CancelOrder(account_id="alice", order_id=order_id))
    assert cancelled.order_cancelled.client_order_id == ""
    assert cancelled.correlation_id == cancelled.causation_id == f"{SHARD}:{order_id + 1}"


def test_amend_and_a_trade_it_takes(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.SELL, BTC, PRICE + 100 * USDT))
    recorder.apply(limit_order("bob", Side.BUY, BTC, PRICE, client_order_id="b-1"))
    envelopes = recorder.apply(
        AmendOrder(account_id="bob", client_order_id="b-1", price=PRICE + 100 * USDT, quantity=BTC)
    )
    names = [payload_of(envelope) for envelope in envelopes]
    assert names[0] == "order_amended"
    amended = envelopes[0].order_amended
    assert (amended.price, amended.quantity, amended.remaining_quantity) == (
        PRICE + 100 * USDT,
        BTC,
        BTC,
    )
    assert amended.priority_kept is False
    assert (amended.previous_price, amended.previous_quantity) == (0, 0)  # not known
    trade = next(envelope for envelope in envelopes if payload_of(envelope) == "trade_executed")
    assert trade.trade_executed.taker_client_order_id == "b-1"


def test_rejection_carries_the_placed_order(recorder: Recorder) -> None:
    (rejected,) = recorder.apply(limit_order("carol", Side.BUY, BTC, PRICE, client_order_id="poor"))
    payload = rejected.order_rejected
    assert payload.reason == errors_pb2.ERROR_REASON_INSUFFICIENT_BALANCE
    assert (payload.client_order_id, payload.account_id) == ("poor", "carol")
    assert (payload.side, payload.order_type) == (types_pb2.SIDE_BUY, types_pb2.ORDER_TYPE_LIMIT)
    assert (payload.price, payload.quantity, payload.quote_quantity) == (PRICE, BTC, 0)


def test_funding_and_reference_data_payloads(recorder: Recorder) -> None:
    (deposited,) = recorder.apply(
        Deposit(account_id="dave", asset="USDT", amount=5 * USDT, transfer_id="t-1")
    )
    assert deposited.symbol == ""
    assert deposited.correlation_id == "transfer:dave:t-1"
    assert (deposited.funds_deposited.amount, deposited.funds_deposited.transfer_id) == (
        5 * USDT,
        "t-1",
    )
    (withdrawn,) = recorder.apply(
        Withdraw(account_id="dave", asset="USDT", amount=2 * USDT, transfer_id="t-2")
    )
    assert withdrawn.funds_withdrawn.amount == 2 * USDT
    (adjusted,) = recorder.apply(
        AdjustBalance(account_id="dave", asset="USDT", delta=-1, transfer_id="t-3", memo="fix")
    )
    assert (adjusted.balance_adjusted.amount, adjusted.balance_adjusted.memo) == (-1, "fix")
    assert withdrawn.seq == deposited.seq + 1  # the account stream is gap-free too
    (mode,) = recorder.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    assert (mode.market_mode_changed.previous_mode, mode.market_mode_changed.mode) == (
        types_pb2.MARKET_MODE_NORMAL,
        types_pb2.MARKET_MODE_HALTED,
    )


def test_bootstrap_events(recorder: Recorder) -> None:
    names: set[str] = set()
    for command, result in recorder.results:
        for envelope in envelopes_for(
            result.events,
            shard_id=SHARD,
            epoch=EPOCH,
            command=command,
            market_spec=market_specs_of(recorder.driver.engine),
        ):
            names.add(payload_of(envelope))
            if envelope.HasField("market_created"):
                market = envelope.market_created.market
                assert (market.symbol, market.base_asset, market.quote_asset) == (
                    "BTC-USDT",
                    "BTC",
                    "USDT",
                )
                assert (market.base_scale, market.price_tick) == (8, USDT // 100)
                assert market.mode == types_pb2.MARKET_MODE_NORMAL
            if envelope.HasField("asset_created"):
                assert envelope.asset_created.asset.asset in {"BTC", "USDT"}
    assert names == {"asset_created", "market_created", "funds_deposited"}


def test_several_commands_at_once_restart_the_index_and_are_deterministic(
    recorder: Recorder,
) -> None:
    recorder.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    recorder.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    events: list[Event] = [event for _, result in recorder.results for event in result.events]
    lookup = market_specs_of(recorder.driver.engine)
    first = envelopes_for(events, shard_id=SHARD, epoch=EPOCH, market_spec=lookup)
    again = envelopes_for(events, shard_id=SHARD, epoch=EPOCH, market_spec=lookup)
    assert [e.SerializeToString(deterministic=True) for e in first] == [
        e.SerializeToString(deterministic=True) for e in again
    ]
    ids = [envelope.event_id for envelope in first]
    assert len(set(ids)) == len(ids) == len(events)
    for envelope, event in zip(first, events, strict=True):
        shard, engine_seq, index = envelope.event_id.split(":")
        assert (shard, int(engine_seq)) == (SHARD, event.engine_seq)
        same_command = [e for e in events if e.engine_seq == event.engine_seq]
        assert same_command[int(index)] is event
        assert envelope.correlation_id == envelope.causation_id  # no command given


def test_errors_are_named(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = recorder.driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    with pytest.raises(EnvelopeError, match="market unknown"):
        envelopes_for(result.events, shard_id=SHARD, epoch=EPOCH)
    earlier = recorder.results[-1][1].events
    with pytest.raises(EnvelopeError, match="out of order"):
        envelopes_for(
            [*result.events, *earlier],
            shard_id=SHARD,
            epoch=EPOCH,
            market_spec=market_specs_of(recorder.driver.engine),
        )
    with pytest.raises(EnvelopeError, match="several commands"):
        envelopes_for(
            [*earlier, *result.events],
            shard_id=SHARD,
            epoch=EPOCH,
            command=recorder.results[-1][0],
            market_spec=market_specs_of(recorder.driver.engine),
        )


def test_an_envelope_survives_the_wire(recorder: Recorder) -> None:
    recorder.apply(limit_order("alice", Side.SELL, LOT, PRICE))
    for envelope in recorder.apply(limit_order("bob", Side.BUY, LOT, PRICE)):
        decoded = EventEnvelope.FromString(envelope.SerializeToString())
        assert decoded == envelope
