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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, cast

from exchange.common.v1 import errors_pb2, types_pb2
from exchange.events.v1 import core_events_pb2, envelope_pb2
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
# ValueType (a NewType of int), hence these typed one-liners.
def _side(member: Side) -> types_pb2.Side.ValueType:
    return cast("types_pb2.Side.ValueType", SIDE.to_proto(member))


def _order_type(member: OrderType) -> types_pb2.OrderType.ValueType:
    return cast("types_pb2.OrderType.ValueType", ORDER_TYPE.to_proto(member))


def _time_in_force(member: TimeInForce) -> types_pb2.TimeInForce.ValueType:
    return cast("types_pb2.TimeInForce.ValueType", TIME_IN_FORCE.to_proto(member))


def _self_trade_prevention(
    member: SelfTradePrevention,
) -> types_pb2.SelfTradePrevention.ValueType:
    return cast("types_pb2.SelfTradePrevention.ValueType", SELF_TRADE_PREVENTION.to_proto(member))


def _market_mode(member: MarketMode) -> types_pb2.MarketMode.ValueType:
    return cast("types_pb2.MarketMode.ValueType", MARKET_MODE.to_proto(member))


def _cancel_reason(member: CancelReason) -> types_pb2.CancelReason.ValueType:
    return cast("types_pb2.CancelReason.ValueType", CANCEL_REASON.to_proto(member))


def _reject_reason(member: RejectReason) -> errors_pb2.ErrorReason.ValueType:
    return cast("errors_pb2.ErrorReason.ValueType", REJECT_REASON.to_proto(member))


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


def market_to_proto(spec: MarketSpec, mode: MarketMode) -> types_pb2.Market:
    return types_pb2.Market(
        symbol=spec.symbol,
        base_asset=spec.base_asset,
        quote_asset=spec.quote_asset,
        base_scale=spec.base_scale,
        quote_scale=spec.quote_scale,
        price_tick=spec.price_tick,
        lot_step=spec.lot_step,
        min_quantity=spec.min_quantity,
        max_quantity=spec.max_quantity,
        min_notional=spec.min_notional,
        price_band_bps=spec.price_band_bps,
        maker_fee_ppm=spec.maker_fee_ppm,
        taker_fee_ppm=spec.taker_fee_ppm,
        reference_price=spec.reference_price,
        mode=_market_mode(mode),
    )


class _CommandFacts:
    """What one command tells about its own events beyond what the events carry."""

    __slots__ = ("command", "own_client_order_id", "own_order_id", "taker_filled")

    def __init__(self, command: Command | None, engine_seq: int, events: Sequence[Event]) -> None:
        self.command = command
        self.own_order_id = 0  # the order this command placed (its fills are all here)
        self.own_client_order_id = ""
        self.taker_filled = 0
        if isinstance(command, PlaceOrder):
            self.own_order_id = engine_seq  # order ids are the placing command's engine_seq
            self.own_client_order_id = command.client_order_id
            self.taker_filled = sum(
                event.quantity
                for event in events
                if isinstance(event, TradeExecuted) and event.taker_order_id == engine_seq
            )

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
        return self.taker_filled if order_id == self.own_order_id else 0


def _order_rejected(event: OrderRejected, facts: _CommandFacts) -> core_events_pb2.OrderRejected:
    payload = core_events_pb2.OrderRejected(
        client_order_id=event.client_order_id,
        account_id=event.account_id,
        reason=_reject_reason(event.reason),
    )
    command = facts.command
    if isinstance(command, PlaceOrder):
        payload.side = _side(command.side)
        payload.order_type = _order_type(command.order_type)
        payload.price = command.price
        payload.quantity = command.quantity
        payload.quote_quantity = command.quote_quantity
    elif isinstance(command, AmendOrder):
        payload.price = command.price
        payload.quantity = command.quantity
    return payload


def _trade_executed(
    event: TradeExecuted, facts: _CommandFacts, market_spec: MarketSpecLookup | None
) -> core_events_pb2.TradeExecuted:
    spec = None if market_spec is None else market_spec(event.symbol)
    if spec is None:
        raise EnvelopeError(
            f"trade {event.trade_id} of {event.symbol!r}: market unknown (pass market_spec)"
        )
    return core_events_pb2.TradeExecuted(
        trade_id=str(event.trade_id),
        base_asset=spec.base_asset,
        quote_asset=spec.quote_asset,
        price=event.price,
        quantity=event.quantity,
        quote_quantity=event.quote_amount,
        taker_side=_side(event.taker_side),
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


def _fill_payload(  # noqa: PLR0912  (one branch per event type, hot path: no dispatch)
    envelope: EventEnvelope,
    event: Event,
    facts: _CommandFacts,
    market_spec: MarketSpecLookup | None,
) -> None:
    if isinstance(event, FundsReserved | FundsReleased):
        funds = (
            envelope.funds_reserved if isinstance(event, FundsReserved) else envelope.funds_released
        )
        funds.account_id = event.account_id
        funds.asset = event.asset
        funds.amount = event.amount
        funds.order_id = str(event.order_id)
    elif isinstance(event, OrderAccepted):
        envelope.order_accepted.CopyFrom(
            core_events_pb2.OrderAccepted(
                order_id=str(event.order_id),
                client_order_id=event.client_order_id,
                account_id=event.account_id,
                side=_side(event.side),
                order_type=_order_type(event.order_type),
                time_in_force=_time_in_force(event.time_in_force),
                price=event.price,
                quantity=event.quantity,
                quote_quantity=event.quote_quantity,
                post_only=event.post_only,
                self_trade_prevention=_self_trade_prevention(event.self_trade_prevention),
            )
        )
    elif isinstance(event, TradeExecuted):
        envelope.trade_executed.CopyFrom(_trade_executed(event, facts, market_spec))
    elif isinstance(event, OrderCancelled | OrderExpired):
        ended = (
            envelope.order_cancelled
            if isinstance(event, OrderCancelled)
            else envelope.order_expired
        )
        ended.order_id = str(event.order_id)
        ended.client_order_id = facts.client_order_id_of(event.order_id)
        ended.account_id = event.account_id
        ended.reason = _cancel_reason(event.reason)
        ended.filled_quantity = facts.filled_quantity_of(event.order_id)
        if isinstance(event, OrderCancelled):
            envelope.order_cancelled.cancelled_quantity = event.quantity_cancelled
        else:
            envelope.order_expired.expired_quantity = event.quantity_expired
    elif isinstance(event, OrderAmended):
        envelope.order_amended.CopyFrom(
            core_events_pb2.OrderAmended(
                order_id=str(event.order_id),
                account_id=event.account_id,
                price=event.price,
                quantity=event.quantity,
                remaining_quantity=event.quantity_remaining,
                priority_kept=event.priority_kept,
            )
        )
    elif isinstance(event, OrderRejected):
        envelope.order_rejected.CopyFrom(_order_rejected(event, facts))
    elif isinstance(event, FundsDeposited | FundsWithdrawn):
        funding = (
            envelope.funds_deposited
            if isinstance(event, FundsDeposited)
            else envelope.funds_withdrawn
        )
        funding.transfer_id = event.transfer_id
        funding.account_id = event.account_id
        funding.asset = event.asset
        funding.amount = event.amount
    elif isinstance(event, BalanceAdjusted):
        envelope.balance_adjusted.CopyFrom(
            core_events_pb2.BalanceAdjusted(
                transfer_id=event.transfer_id,
                account_id=event.account_id,
                asset=event.asset,
                amount=event.delta,
                memo=event.memo,
            )
        )
    elif isinstance(event, AssetCreated):
        envelope.asset_created.asset.CopyFrom(types_pb2.Asset(asset=event.asset, scale=event.scale))
    elif isinstance(event, MarketCreated):
        envelope.market_created.market.CopyFrom(market_to_proto(event.spec, MarketMode.NORMAL))
    elif isinstance(event, MarketModeChanged):
        envelope.market_mode_changed.CopyFrom(
            core_events_pb2.MarketModeChanged(
                previous_mode=_market_mode(event.previous_mode),
                mode=_market_mode(event.mode),
            )
        )
    else:  # pragma: no cover  (the Event union is closed; a new type must be added above)
        raise EnvelopeError(f"no envelope mapping for {type(event).__name__}")


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
    """
    envelopes: list[EventEnvelope] = []
    engine_seq_current = -1
    index = 0
    facts = _CommandFacts(None, 0, ())
    correlation_id = causation_id = ""
    for event in events:
        engine_seq = event.engine_seq
        if engine_seq != engine_seq_current:
            if engine_seq < engine_seq_current:
                raise EnvelopeError(
                    f"engine_seq {engine_seq} after {engine_seq_current}: events out of order"
                )
            if command is not None and engine_seq_current != -1:
                raise EnvelopeError("`command` given with the events of several commands")
            engine_seq_current = engine_seq
            index = 0
            facts = _CommandFacts(command, engine_seq, events)
            causation_id = command_id(shard_id, engine_seq)
            correlation_id = correlation_id_for(command, shard_id=shard_id, engine_seq=engine_seq)
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
        _fill_payload(envelope, event, facts, market_spec)
        envelopes.append(envelope)
        index += 1
    return envelopes
