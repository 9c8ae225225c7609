"""Engine events -> `exchange.events.v1.EventEnvelope` (docs/adr/0004, docs/adr/0007).

`envelopes_for(events, shard_id=..., epoch=..., command=..., market_spec=...)` turns the
events of one or more consecutive commands (each command's `ApplyResult.events`, in order)
into envelopes. It is a pure function of its arguments, so a replay of the WAL regenerates
byte-identical envelopes (the outbox relies on that; consumers dedupe on `event_id`).

Envelope fields:
- `event_id` = `<shard_id>:<engine_seq>:<index>`, index = position of the event among the
  events of its command (0-based), as in ADR 0004.
- `event_version` = 1 (`EVENT_VERSION`); `producer` = PRODUCER_CORE.
- `symbol`, `seq`, `engine_seq` from the event; `occurred_at` = its `timestamp_ns` (the
  command's sequenced time, never a wall clock read here).
- `causation_id` = the command id `<shard_id>:<engine_seq>` (the WAL record that caused it).
- `correlation_id` = the client's key for the request chain, scoped by account:
  `order:<account_id>:<client_order_id>` for PlaceOrder / CancelOrder / AmendOrder with a
  client order id (so an order's placement, amends and cancels correlate),
  `transfer:<account_id>:<transfer_id>` for Deposit / Withdraw / AdjustBalance with a transfer
  id, else the command id (no command given: also the command id).
- `epoch` = the caller's fencing epoch (the outbox stamps the epoch of the instance that
  publishes; see core/outbox/README.md).

Payload fields the engine's events do not carry are filled from the command when it
determines them exactly, and otherwise left at their zero value (proto3 has no presence):
- OrderRejected: side, order_type, price, quantity, quote_quantity from a PlaceOrder;
  price and quantity from an AmendOrder. The engine's target `order_id` has no proto field.
- TradeExecuted: base_asset / quote_asset from `market_spec(symbol)` (required when a trade
  is converted); taker_client_order_id from the PlaceOrder / AmendOrder that took;
  maker_client_order_id is not known (empty).
- OrderCancelled / OrderExpired: client_order_id when the order is the command's own
  (the order it placed, or the target named by client order id); filled_quantity only for
  the order placed by the same command (its fills are all in this command), else 0.
- OrderAmended: previous_price / previous_quantity are not known (0).
- FundsDeposited / FundsWithdrawn `reference`, BalanceAdjusted / MarketModeChanged
  `operator_id`, MarketModeChanged `reason`, Asset `display_name`: empty.
- MarketCreated: the market's mode is MARKET_MODE_NORMAL (every market starts so).

This module is the mapping and the reference path (protobuf objects). The outbox's fast path,
the same bytes written by a hand-written protobuf encoder around upb-serialized payloads, is
core/contracts/event_wire.py; both share the payload builders and `CommandFacts` below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from exchange.common.v1 import errors_pb2, types_pb2
from exchange.events.v1 import core_events_pb2, envelope_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from core.contracts.enums import (
    CANCEL_REASON,
    MARKET_MODE,
    ORDER_TYPE,
    REJECT_REASON,
    SELF_TRADE_PREVENTION,
    SIDE,
    TIME_IN_FORCE,
)
from core.contracts.markets import market_spec_message
from core.engine import (
    AdjustBalance,
    AmendOrder,
    AssetCreated,
    BalanceAdjusted,
    CancelOrder,
    CancelReason,
    Command,
    Deposit,
    Engine,
    Event,
    FundsDeposited,
    FundsReleased,
    FundsReserved,
    FundsWithdrawn,
    MarketCreated,
    MarketMode,
    MarketModeChanged,
    MarketSpec,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradeExecuted,
    Withdraw,
)

EVENT_VERSION: Final = 1
NANOSECONDS_PER_SECOND: Final = 1_000_000_000

EventEnvelope = envelope_pb2.EventEnvelope

MarketSpecLookup = Callable[[str], MarketSpec | None]
"""symbol -> its MarketSpec (None if unknown); markets never change assets once created."""


# The mappings in core.contracts.enums return plain ints; the generated stubs want each enum's
# ValueType (a NewType of int). Converting every member once at import makes each conversion
# on the hot path a dict lookup.
_SIDES: Final[dict[Side, types_pb2.Side.ValueType]] = {
    member: cast("types_pb2.Side.ValueType", SIDE.to_proto(member)) for member in Side
}
_ORDER_TYPES: Final[dict[OrderType, types_pb2.OrderType.ValueType]] = {
    member: cast("types_pb2.OrderType.ValueType", ORDER_TYPE.to_proto(member))
    for member in OrderType
}
_TIMES_IN_FORCE: Final[dict[TimeInForce, types_pb2.TimeInForce.ValueType]] = {
    member: cast("types_pb2.TimeInForce.ValueType", TIME_IN_FORCE.to_proto(member))
    for member in TimeInForce
}
_SELF_TRADE_PREVENTIONS: Final[
    dict[SelfTradePrevention, types_pb2.SelfTradePrevention.ValueType]
] = {
    member: cast("types_pb2.SelfTradePrevention.ValueType", SELF_TRADE_PREVENTION.to_proto(member))
    for member in SelfTradePrevention
}
_MARKET_MODES: Final[dict[MarketMode, types_pb2.MarketMode.ValueType]] = {
    member: cast("types_pb2.MarketMode.ValueType", MARKET_MODE.to_proto(member))
    for member in MarketMode
}
_CANCEL_REASONS: Final[dict[CancelReason, types_pb2.CancelReason.ValueType]] = {
    member: cast("types_pb2.CancelReason.ValueType", CANCEL_REASON.to_proto(member))
    for member in CancelReason
}
_REJECT_REASONS: Final[dict[RejectReason, errors_pb2.ErrorReason.ValueType]] = {
    member: cast("errors_pb2.ErrorReason.ValueType", REJECT_REASON.to_proto(member))
    for member in RejectReason
}


class EnvelopeError(ValueError):
    """The events cannot be converted: out of engine order, or a trade's market is unknown."""


def command_id(shard_id: str, engine_seq: int) -> str:
    """The id of the command logged at `engine_seq` in `shard_id`: every envelope's causation."""
    return f"{shard_id}:{engine_seq}"


def event_id(shard_id: str, engine_seq: int, index: int) -> str:
    """ADR 0004: `<shard>:<engine_seq>:<index within the command>`."""
    return f"{shard_id}:{engine_seq}:{index}"


def correlation_id_for(command: Command | None, *, shard_id: str, engine_seq: int) -> str:
    """The request chain a command belongs to (see the module docstring)."""
    if isinstance(command, PlaceOrder | CancelOrder | AmendOrder) and command.client_order_id:
        return f"order:{command.account_id}:{command.client_order_id}"
    if isinstance(command, Deposit | Withdraw | AdjustBalance) and command.transfer_id:
        return f"transfer:{command.account_id}:{command.transfer_id}"
    return command_id(shard_id, engine_seq)


def market_specs_of(engine: Engine) -> MarketSpecLookup:
    """A `market_spec` lookup over an engine's markets (for the service and tests)."""

    def lookup(symbol: str) -> MarketSpec | None:
        view = engine.market(symbol)
        return None if view is None else view.spec

    return lookup


class CommandFacts:
    """What one command tells about its own events beyond what the events carry.

    Built per command by both envelope paths (`envelopes_for` here, `EnvelopeSerializer` in
    core/contracts/event_wire.py), so both fill the command-derived fields alike.
    """

    __slots__ = (
        "_placing_events",
        "_taker_filled",
        "command",
        "own_client_order_id",
        "own_order_id",
    )

    def __init__(self, command: Command | None, engine_seq: int, events: Sequence[Event]) -> None:
        self.command = command
        self.own_order_id = 0  # the order this command placed (its fills are all here)
        self.own_client_order_id = ""
        self._taker_filled: int | None = None  # summed on first use (rarely needed)
        self._placing_events: Sequence[Event] = ()
        if isinstance(command, PlaceOrder):
            self._placing_events = events
            self.own_order_id = engine_seq  # order ids are the placing command's engine_seq
            self.own_client_order_id = command.client_order_id

    def client_order_id_of(self, order_id: int) -> str:
        command = self.command
        if isinstance(command, PlaceOrder):
            return self.own_client_order_id if order_id == self.own_order_id else ""
        if isinstance(command, CancelOrder | AmendOrder) and (command.order_id in (0, order_id)):
            return command.client_order_id
        return ""

    def taker_client_order_id(self, taker_order_id: int) -> str:
        if isinstance(self.command, AmendOrder):  # an amend's trades are all the amended order's
            return self.command.client_order_id
        return self.client_order_id_of(taker_order_id)

    def filled_quantity_of(self, order_id: int) -> int:
        if order_id != self.own_order_id:
            return 0
        if self._taker_filled is None:
            self._taker_filled = sum(
                event.quantity
                for event in self._placing_events
                if isinstance(event, TradeExecuted) and event.taker_order_id == order_id
            )
        return self._taker_filled


# ---------------------------------------------------------------------------- payloads
# One builder per engine event type: (the envelope's payload field, the payload message).
# Both envelope paths (`envelopes_for` below and core/contracts/event_wire.py) share them,
# so a payload has one mapping only.

PayloadBuilder = Callable[[Any, CommandFacts, "MarketSpecLookup | None"], tuple[str, Message]]


def _funds_held(
    event: FundsReserved | FundsReleased,
    _facts: CommandFacts,
    _market_spec: MarketSpecLookup | None,
) -> tuple[str, Message]:
    reserved = isinstance(event, FundsReserved)
    message = core_events_pb2.FundsReserved if reserved else core_events_pb2.FundsReleased
    return "funds_reserved" if reserved else "funds_released", message(
        account_id=event.account_id,
        asset=event.asset,
        amount=event.amount,
        order_id=str(event.order_id),
    )


def _order_accepted(
    event: OrderAccepted, _facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "order_accepted", core_events_pb2.OrderAccepted(
        order_id=str(event.order_id),
        client_order_id=event.client_order_id,
        account_id=event.account_id,
        side=_SIDES[event.side],
        order_type=_ORDER_TYPES[event.order_type],
        time_in_force=_TIMES_IN_FORCE[event.time_in_force],
        price=event.price,
        quantity=event.quantity,
        quote_quantity=event.quote_quantity,
        post_only=event.post_only,
        self_trade_prevention=_SELF_TRADE_PREVENTIONS[event.self_trade_prevention],
    )


def _trade_executed(
    event: TradeExecuted, facts: CommandFacts, market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    spec = None if market_spec is None else market_spec(event.symbol)
    if spec is None:
        raise EnvelopeError(
            f"trade {event.trade_id} of {event.symbol!r}: market unknown (pass market_spec)"
        )
    return "trade_executed", core_events_pb2.TradeExecuted(
        trade_id=str(event.trade_id),
        base_asset=spec.base_asset,
        quote_asset=spec.quote_asset,
        price=event.price,
        quantity=event.quantity,
        quote_quantity=event.quote_amount,
        taker_side=_SIDES[event.taker_side],
        maker_order_id=str(event.maker_order_id),
        maker_account_id=event.maker_account_id,
        taker_order_id=str(event.taker_order_id),
        taker_client_order_id=facts.taker_client_order_id(event.taker_order_id),
        taker_account_id=event.taker_account_id,
        maker_fee=event.maker_fee,
        taker_fee=event.taker_fee,
        maker_remaining_quantity=event.maker_quantity_remaining,
        taker_remaining_quantity=event.taker_quantity_remaining,
    )


def _order_cancelled(
    event: OrderCancelled, facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "order_cancelled", core_events_pb2.OrderCancelled(
        order_id=str(event.order_id),
        client_order_id=facts.client_order_id_of(event.order_id),
        account_id=event.account_id,
        reason=_CANCEL_REASONS[event.reason],
        filled_quantity=facts.filled_quantity_of(event.order_id),
        cancelled_quantity=event.quantity_cancelled,
    )


def _order_expired(
    event: OrderExpired, facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "order_expired", core_events_pb2.OrderExpired(
        order_id=str(event.order_id),
        client_order_id=facts.client_order_id_of(event.order_id),
        account_id=event.account_id,
        reason=_CANCEL_REASONS[event.reason],
        filled_quantity=facts.filled_quantity_of(event.order_id),
        expired_quantity=event.quantity_expired,
    )


def _order_amended(
    event: OrderAmended, _facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "order_amended", core_events_pb2.OrderAmended(
        order_id=str(event.order_id),
        account_id=event.account_id,
        price=event.price,
        quantity=event.quantity,
        remaining_quantity=event.quantity_remaining,
        priority_kept=event.priority_kept,
    )


def _order_rejected(
    event: OrderRejected, facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    payload = core_events_pb2.OrderRejected(
        client_order_id=event.client_order_id,
        account_id=event.account_id,
        reason=_REJECT_REASONS[event.reason],
    )
    command = facts.command
    if isinstance(command, PlaceOrder):
        payload.side = _SIDES[command.side]
        payload.order_type = _ORDER_TYPES[command.order_type]
        payload.price = command.price
        payload.quantity = command.quantity
        payload.quote_quantity = command.quote_quantity
    elif isinstance(command, AmendOrder):
        payload.price = command.price
        payload.quantity = command.quantity
    return "order_rejected", payload


def _funds_transferred(
    event: FundsDeposited | FundsWithdrawn,
    _facts: CommandFacts,
    _market_spec: MarketSpecLookup | None,
) -> tuple[str, Message]:
    deposited = isinstance(event, FundsDeposited)
    message = core_events_pb2.FundsDeposited if deposited else core_events_pb2.FundsWithdrawn
    return "funds_deposited" if deposited else "funds_withdrawn", message(
        transfer_id=event.transfer_id,
        account_id=event.account_id,
        asset=event.asset,
        amount=event.amount,
    )


def _balance_adjusted(
    event: BalanceAdjusted, _facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "balance_adjusted", core_events_pb2.BalanceAdjusted(
        transfer_id=event.transfer_id,
        account_id=event.account_id,
        asset=event.asset,
        amount=event.delta,
        memo=event.memo,
    )


def _asset_created(
    event: AssetCreated, _facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "asset_created", core_events_pb2.AssetCreated(
        asset=types_pb2.Asset(asset=event.asset, scale=event.scale)
    )


def _market_created(
    event: MarketCreated, _facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "market_created", core_events_pb2.MarketCreated(
        market=market_spec_message(event.spec, MarketMode.NORMAL)
    )


def _market_mode_changed(
    event: MarketModeChanged, _facts: CommandFacts, _market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    return "market_mode_changed", core_events_pb2.MarketModeChanged(
        previous_mode=_MARKET_MODES[event.previous_mode], mode=_MARKET_MODES[event.mode]
    )


_PAYLOAD_BUILDERS: Final[dict[type[Event], PayloadBuilder]] = {
    FundsReserved: _funds_held,
    FundsReleased: _funds_held,
    OrderAccepted: _order_accepted,
    TradeExecuted: _trade_executed,
    OrderCancelled: _order_cancelled,
    OrderExpired: _order_expired,
    OrderAmended: _order_amended,
    OrderRejected: _order_rejected,
    FundsDeposited: _funds_transferred,
    FundsWithdrawn: _funds_transferred,
    BalanceAdjusted: _balance_adjusted,
    AssetCreated: _asset_created,
    MarketCreated: _market_created,
    MarketModeChanged: _market_mode_changed,
}


def payload_of(
    event: Event, facts: CommandFacts, market_spec: MarketSpecLookup | None
) -> tuple[str, Message]:
    """(the envelope's payload field name, the payload message) for one event."""
    builder = _PAYLOAD_BUILDERS.get(type(event))
    if builder is None:  # the Event union is closed; a new type must be added above
        raise EnvelopeError(f"no envelope mapping for {type(event).__name__}")
    return builder(event, facts, market_spec)


# ---------------------------------------------------------------------------- commands


def command_runs(
    events: Sequence[Event], command: Command | None
) -> list[tuple[int, Sequence[Event]]]:
    """(engine_seq, that command's events) for each command in `events`, checking the order."""
    count = len(events)
    if count and events[0].engine_seq == events[-1].engine_seq:  # usually: one command
        engine_seq = events[0].engine_seq
        if all(event.engine_seq == engine_seq for event in events):
            return [(engine_seq, events)]
    runs: list[tuple[int, Sequence[Event]]] = []
    start = 0
    while start < count:
        engine_seq = events[start].engine_seq
        end = start + 1
        while end < count and events[end].engine_seq == engine_seq:
            end += 1
        if end < count:
            if events[end].engine_seq < engine_seq:
                raise EnvelopeError(
                    f"engine_seq {events[end].engine_seq} after {engine_seq}: events out of order"
                )
            if command is not None:
                raise EnvelopeError("`command` given with the events of several commands")
        runs.append((engine_seq, events[start:end]))
        start = end
    return runs


def envelopes_for(
    events: Sequence[Event],
    *,
    shard_id: str,
    epoch: int,
    command: Command | None = None,
    market_spec: MarketSpecLookup | None = None,
) -> list[EventEnvelope]:
    """Envelopes for `events`, in order (see the module docstring for every field).

    `events` are the events of one command (`ApplyResult.events`), or of several consecutive
    commands in engine order with every command's events complete (the index restarts at 0
    for each engine_seq). `command` is the command that produced them (only meaningful
    with the events of that one command); without it, correlation_id is the command id and
    the command-derived payload fields stay empty. `market_spec` is needed for trades.
    Raises `EnvelopeError` if engine_seq decreases or a trade's market is unknown.

    This is the reference path (protobuf objects, for readers and tests); the outbox
    journals `core.contracts.event_wire.serialized_envelopes_for`, which gives the same bytes
    several times cheaper.
    """
    envelopes: list[EventEnvelope] = []
    for engine_seq, run in command_runs(events, command):
        facts = CommandFacts(command, engine_seq, run)
        causation_id = command_id(shard_id, engine_seq)
        correlation_id = correlation_id_for(command, shard_id=shard_id, engine_seq=engine_seq)
        for index, event in enumerate(run):
            seconds, nanos = divmod(event.timestamp_ns, NANOSECONDS_PER_SECOND)
            envelope = EventEnvelope(
                event_id=event_id(shard_id, engine_seq, index),
                event_version=EVENT_VERSION,
                symbol=event.symbol,
                seq=event.seq,
                occurred_at=Timestamp(seconds=seconds, nanos=nanos),
                correlation_id=correlation_id,
                causation_id=causation_id,
                epoch=epoch,
                engine_seq=engine_seq,
                shard_id=shard_id,
                producer=envelope_pb2.PRODUCER_CORE,
            )
            name, payload = payload_of(event, facts, market_spec)
            getattr(envelope, name).CopyFrom(payload)
            envelopes.append(envelope)
    return envelopes
