"""Trading requests -> engine commands, and orders / fills -> their contract messages.

Request conversion validates what the engine must never see (docs/api/errors.md):
- every mutating request carries its idempotency key (client_order_id for a place, request_id
  otherwise): IDEMPOTENCY_KEY_MISSING;
- enums are specified (side, order_type): FIELD_INVALID; unspecified time in force means GTC
  for LIMIT and IOC for MARKET, unspecified self-trade prevention CANCEL_NEWEST;
- quantities are positive and exactly one of quantity / quote_quantity is set:
  QUANTITY_INVALID; a LIMIT has a positive price and a MARKET none: PRICE_INVALID;
- strings fit their limits (core/contracts/validation.py): FIELD_INVALID.
The rules that depend on the state (tick, lot, band, balance, time-in-force combinations …)
belong to the engine, which rejects by name; such rejections are logged like any command.

`OrderRecord` / `FillRecord` are the service's view of an order and of one fill, kept up to date
from engine events (core/service/order_history.py); `fill_order_message` / `fill_fill_message`
write them into `exchange.trading.v1.Order` / `Fill`. Order ids travel as decimal strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from exchange.common.v1 import errors_pb2, types_pb2
from exchange.trading.v1 import trading_pb2

from common.identifiers import is_identifier
from core.contracts import validation
from core.contracts.enums import (
    CANCEL_REASON,
    ORDER_STATUS,
    ORDER_TYPE,
    SELF_TRADE_PREVENTION,
    SIDE,
    TIME_IN_FORCE,
)
from core.contracts.errors import RequestError, field_invalid, rejection_reason
from core.engine import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    OrderType,
    OrderView,
    Outcome,
    PlaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.enums import CancelReason, OrderStatus, RejectReason
from core.engine.fast_frozen import positional_constructor
from core.engine.market import SYMBOL_LENGTH_MAX

BATCH_COMMANDS_MAX: Final = 10_000

OrderCommand = PlaceOrder | CancelOrder | AmendOrder | CancelAllOrders

_new_place_order = positional_constructor(PlaceOrder)
_new_cancel_order = positional_constructor(CancelOrder)

_SIDES: Final = {
    number: SIDE.from_proto(number) for number in (types_pb2.SIDE_BUY, types_pb2.SIDE_SELL)
}
_ORDER_TYPES: Final = {
    number: ORDER_TYPE.from_proto(number)
    for number in (types_pb2.ORDER_TYPE_LIMIT, types_pb2.ORDER_TYPE_MARKET)
}
_TIME_IN_FORCES: Final = {
    number: TIME_IN_FORCE.from_proto(number)
    for number in (
        types_pb2.TIME_IN_FORCE_GTC,
        types_pb2.TIME_IN_FORCE_IOC,
        types_pb2.TIME_IN_FORCE_FOK,
    )
}
_SELF_TRADE_PREVENTIONS: Final = {
    types_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED: SelfTradePrevention.CANCEL_NEWEST,
    **{
        number: SELF_TRADE_PREVENTION.from_proto(number)
        for number in (
            types_pb2.SELF_TRADE_PREVENTION_CANCEL_NEWEST,
            types_pb2.SELF_TRADE_PREVENTION_CANCEL_OLDEST,
            types_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH,
        )
    },
}
_LIMIT: Final = OrderType.LIMIT
_GTC: Final = TimeInForce.GTC
_IOC: Final = TimeInForce.IOC
_QUANTITY_INVALID: Final = errors_pb2.ERROR_REASON_QUANTITY_INVALID
_PRICE_INVALID: Final = errors_pb2.ERROR_REASON_PRICE_INVALID
_KEY_MISSING: Final = errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_MISSING
_COID_MAX: Final = validation.CLIENT_ORDER_ID_LENGTH_MAX
_SYMBOL_MAX: Final = SYMBOL_LENGTH_MAX


def place_order(account_id: str, request: trading_pb2.PlaceOrderRequest) -> PlaceOrder:
    """The engine command of a PlaceOrderRequest; `RequestError` for malformed input.

    The hot path of the streaming order entry: one attribute read per field and a positional
    constructor (see core/engine/fast_frozen.py), no keyword matching.
    """
    client_order_id = request.client_order_id
    if (
        not client_order_id
        or len(client_order_id) > _COID_MAX
        or not is_identifier(client_order_id)
    ):
        validation.identifier(client_order_id, "client_order_id", _COID_MAX, missing=_KEY_MISSING)
    symbol = request.symbol
    if not symbol or len(symbol) > _SYMBOL_MAX or not is_identifier(symbol):
        validation.symbol(symbol)
    side = _SIDES.get(request.side)
    if side is None:
        raise field_invalid("side", "side must be BUY or SELL")
    order_type = _ORDER_TYPES.get(request.order_type)
    if order_type is None:
        raise field_invalid("order_type", "order_type must be LIMIT or MARKET")
    quantity = request.quantity
    quote_quantity = request.quote_quantity
    if quantity < 0 or quote_quantity < 0 or (quantity > 0) == (quote_quantity > 0):
        raise RequestError(
            _QUANTITY_INVALID,
            "exactly one of quantity and quote_quantity must be positive",
            field="quantity",
        )
    price = request.price
    if (price <= 0) if order_type is _LIMIT else (price != 0):
        raise RequestError(
            _PRICE_INVALID,
            "a LIMIT order needs a positive price, a MARKET order none",
            field="price",
        )
    time_in_force_number = request.time_in_force
    if time_in_force_number:
        time_in_force = _TIME_IN_FORCES.get(time_in_force_number)
        if time_in_force is None:
            raise field_invalid("time_in_force", "time_in_force is unknown")
    else:
        time_in_force = _GTC if order_type is _LIMIT else _IOC
    self_trade_prevention = _SELF_TRADE_PREVENTIONS.get(request.self_trade_prevention)
    if self_trade_prevention is None:
        raise field_invalid("self_trade_prevention", "self_trade_prevention is unknown")
    return _new_place_order(
        account_id,
        symbol,
        side,
        order_type,
        quantity,
        price,
        quote_quantity,
        time_in_force,
        request.post_only,
        self_trade_prevention,
        client_order_id,
    )


def cancel_order(account_id: str, request: trading_pb2.CancelOrderRequest) -> CancelOrder:
    request_id = validation.idempotency_key(request.request_id, "request_id")
    order_id, client_order_id = validation.order_reference(
        request.order_id, request.client_order_id
    )
    return _new_cancel_order(account_id, order_id, client_order_id, request_id)


def amend_order(account_id: str, request: trading_pb2.AmendOrderRequest) -> AmendOrder:
    """The engine's amend takes the new price and total quantity; 0 keeps the current one.

    The WAL holds the request as sent (0 = keep): the engine fills the kept values from the
    order when it applies the command, so replay decides the same, and a retry with the same
    `request_id` compares equal to what was logged (ADR 0016).
    """
    request_id = validation.idempotency_key(request.request_id, "request_id")
    order_id = validation.order_id(request.order_id)
    if request.new_quantity < 0:
        raise RequestError(
            _QUANTITY_INVALID, "new_quantity must not be negative", field="new_quantity"
        )
    if request.new_price < 0:
        raise RequestError(_PRICE_INVALID, "new_price must not be negative", field="new_price")
    if request.new_quantity == 0 and request.new_price == 0:
        raise field_invalid("new_quantity", "set new_quantity, new_price or both")
    return AmendOrder(
        account_id=account_id,
        order_id=order_id,
        price=request.new_price,
        quantity=request.new_quantity,
        request_id=request_id,
    )


def cancel_all_orders(
    account_id: str, request: trading_pb2.CancelAllOrdersRequest
) -> CancelAllOrders:
    request_id = validation.idempotency_key(request.request_id, "request_id")
    return CancelAllOrders(
        account_id=account_id,
        symbol=validation.optional_symbol(request.symbol),
        request_id=request_id,
    )


def batch_size(request: trading_pb2.StreamOrdersRequest) -> int:
    """The number of commands of a streaming batch; BATCH_TOO_LARGE above the limit."""
    count = len(request.commands)
    if count > BATCH_COMMANDS_MAX:
        raise RequestError(
            errors_pb2.ERROR_REASON_BATCH_TOO_LARGE,
            f"a batch holds at most {BATCH_COMMANDS_MAX} commands, got {count}",
            field="commands",
        )
    return count


def order_command(account_id: str, command: trading_pb2.OrderCommand) -> OrderCommand:
    """One command of a streaming batch."""
    kind = command.WhichOneof("command")
    if kind == "place":
        return place_order(account_id, command.place)
    if kind == "cancel":
        return cancel_order(account_id, command.cancel)
    if kind == "amend":
        return amend_order(account_id, command.amend)
    if kind == "cancel_all":
        return cancel_all_orders(account_id, command.cancel_all)
    raise field_invalid("command", "an OrderCommand must hold one command")


class OrderRecord:
    """One order as the service shows it: the request, its progress and its timestamps."""

    __slots__ = (
        "account_id",
        "cancel_reason",
        "client_order_id",
        "created_ns",
        "engine_seq",
        "fees_paid",
        "filled_quantity",
        "filled_quote_quantity",
        "order_id",
        "order_type",
        "post_only",
        "price",
        "quantity",
        "quote_quantity",
        "reject_reason",
        "remaining_quantity",
        "self_trade_prevention",
        "side",
        "status",
        "symbol",
        "time_in_force",
        "updated_ns",
    )

    def __init__(  # noqa: PLR0917  (positional on the hot path: order_history._accepted)
        self,
        order_id: int,
        account_id: str,
        client_order_id: str,
        symbol: str,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        post_only: bool,  # noqa: FBT001  (positional on the hot path)
        self_trade_prevention: SelfTradePrevention,
        price: int,
        quantity: int,
        quote_quantity: int,
        status: OrderStatus,
        remaining_quantity: int,
        created_ns: int,
        engine_seq: int,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.post_only = post_only
        self.self_trade_prevention = self_trade_prevention
        self.price = price
        self.quantity = quantity
        self.quote_quantity = quote_quantity
        self.status = status
        self.filled_quantity = 0
        self.filled_quote_quantity = 0
        self.remaining_quantity = remaining_quantity
        self.fees_paid = 0
        self.cancel_reason: CancelReason | None = None
        self.reject_reason: RejectReason | None = None
        self.created_ns = created_ns
        self.updated_ns = created_ns
        self.engine_seq = engine_seq

    @classmethod
    def from_view(cls, view: OrderView, *, engine_seq: int) -> OrderRecord:
        """An open order known only from the engine (e.g. after a restart): no fill totals
        beyond the filled quantity, no timestamps."""
        record = cls(
            order_id=view.order_id,
            account_id=view.account_id,
            client_order_id=view.client_order_id,
            symbol=view.symbol,
            side=view.side,
            order_type=view.order_type,
            time_in_force=view.time_in_force,
            post_only=view.post_only,
            self_trade_prevention=view.self_trade_prevention,
            price=view.price,
            quantity=view.quantity,
            quote_quantity=0,
            status=view.status,
            remaining_quantity=view.quantity_remaining,
            created_ns=0,
            engine_seq=engine_seq,
        )
        record.filled_quantity = view.filled_quantity
        return record


class FillRecord:
    """One execution of one order, from the side of that order's account."""

    __slots__ = (
        "client_order_id",
        "engine_seq",
        "executed_ns",
        "fee",
        "fee_asset",
        "is_maker",
        "order_id",
        "price",
        "quantity",
        "quote_quantity",
        "side",
        "symbol",
        "trade_id",
    )

    def __init__(  # noqa: PLR0917  (positional on the hot path)
        self,
        trade_id: int,
        order_id: int,
        client_order_id: str,
        symbol: str,
        side: Side,
        is_maker: bool,  # noqa: FBT001  (positional on the hot path)
        price: int,
        quantity: int,
        quote_quantity: int,
        fee: int,
        fee_asset: str,
        executed_ns: int,
        engine_seq: int,
    ) -> None:
        self.trade_id = trade_id
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.is_maker = is_maker
        self.price = price
        self.quantity = quantity
        self.quote_quantity = quote_quantity
        self.fee = fee
        self.fee_asset = fee_asset
        self.executed_ns = executed_ns
        self.engine_seq = engine_seq


_SIDE_TO_PROTO: Final = {member: SIDE.to_proto(member) for member in Side}
_ORDER_TYPE_TO_PROTO: Final = {member: ORDER_TYPE.to_proto(member) for member in OrderType}
_TIME_IN_FORCE_TO_PROTO: Final = {member: TIME_IN_FORCE.to_proto(member) for member in TimeInForce}
_STP_TO_PROTO: Final = {
    member: SELF_TRADE_PREVENTION.to_proto(member) for member in SelfTradePrevention
}
_STATUS_TO_PROTO: Final = {member: ORDER_STATUS.to_proto(member) for member in OrderStatus}
_LIQUIDITY_MAKER: Final = types_pb2.LIQUIDITY_MAKER
_LIQUIDITY_TAKER: Final = types_pb2.LIQUIDITY_TAKER


def fill_order_message(message: trading_pb2.Order, record: OrderRecord) -> None:
    """Write `record` into an (empty) Order message in place (cheaper than a constructor)."""
    message.order_id = str(record.order_id)
    message.client_order_id = record.client_order_id
    message.account_id = record.account_id
    message.symbol = record.symbol
    message.side = _SIDE_TO_PROTO[record.side]  # type: ignore[assignment]
    message.order_type = _ORDER_TYPE_TO_PROTO[record.order_type]  # type: ignore[assignment]
    message.time_in_force = _TIME_IN_FORCE_TO_PROTO[record.time_in_force]  # type: ignore[assignment]
    message.price = record.price
    message.quantity = record.quantity
    message.quote_quantity = record.quote_quantity
    message.post_only = record.post_only
    message.self_trade_prevention = _STP_TO_PROTO[record.self_trade_prevention]  # type: ignore[assignment]
    message.status = _STATUS_TO_PROTO[record.status]  # type: ignore[assignment]
    message.filled_quantity = record.filled_quantity
    message.filled_quote_quantity = record.filled_quote_quantity
    message.remaining_quantity = record.remaining_quantity
    message.fees_paid = record.fees_paid
    if record.cancel_reason is not None:
        message.cancel_reason = CANCEL_REASON.to_proto(record.cancel_reason)  # type: ignore[assignment]
    if record.reject_reason is not None:
        message.reject_reason = rejection_reason(record.reject_reason)
    if record.created_ns:
        message.created_at.FromNanoseconds(record.created_ns)
    if record.updated_ns:
        message.updated_at.FromNanoseconds(record.updated_ns)
    message.engine_seq = record.engine_seq


def _fill_order_identity(message: trading_pb2.Order, record: OrderRecord) -> None:
    message.order_id = str(record.order_id)
    message.client_order_id = record.client_order_id
    message.symbol = record.symbol
    message.side = _SIDE_TO_PROTO[record.side]  # type: ignore[assignment]
    message.order_type = _ORDER_TYPE_TO_PROTO[record.order_type]  # type: ignore[assignment]
    message.time_in_force = _TIME_IN_FORCE_TO_PROTO[record.time_in_force]  # type: ignore[assignment]


def fill_order_summary(message: trading_pb2.Order, record: OrderRecord) -> None:
    """The streaming entry's cheaper form of an order: identity, terms and progress, without
    the caller's own account id, fee and notional totals or timestamps (GetOrder has them)."""
    _fill_order_identity(message, record)
    message.price = record.price
    message.quantity = record.quantity
    message.status = _STATUS_TO_PROTO[record.status]  # type: ignore[assignment]
    message.filled_quantity = record.filled_quantity
    message.remaining_quantity = record.remaining_quantity
    message.engine_seq = record.engine_seq


_OPEN_STATUSES: Final = frozenset((OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED))


def write_outcome(message: trading_pb2.Order, outcome: Outcome) -> None:
    """Status and progress of the order as the command left it (`Outcome`), over a message
    written from a record that later commands of the same batch may have moved on."""
    status = outcome.status
    if status is None:
        return
    message.status = _STATUS_TO_PROTO[status]  # type: ignore[assignment]
    message.filled_quantity = outcome.filled_quantity
    if status in _OPEN_STATUSES:
        message.remaining_quantity = message.quantity - outcome.filled_quantity
        message.ClearField("cancel_reason")
    else:
        message.remaining_quantity = 0
    message.engine_seq = outcome.engine_seq


def write_placement_progress(message: trading_pb2.Order, fills: Sequence[FillRecord]) -> None:
    """Fill totals and update time of an order as its placing command left them, from that
    command's own fills (all stamped with the command's timestamp, = created_at), over a
    message written from a record that later commands may have moved on: so a retried
    PlaceOrder answers exactly what the first one did (with `write_outcome`)."""
    message.filled_quote_quantity = sum(fill.quote_quantity for fill in fills)
    message.fees_paid = sum(fill.fee for fill in fills)
    if message.HasField("created_at"):
        message.updated_at.CopyFrom(message.created_at)


def fill_order_summary_with_outcome(
    message: trading_pb2.Order, record: OrderRecord, outcome: Outcome
) -> None:
    """`fill_order_summary` then `write_outcome`, in one pass: the stream's per-result hot path.

    The same message (tests/unit/core/contracts/test_orders_conversions.py), with every field
    written once and zeros (proto3 defaults) not written at all.
    """
    _fill_order_identity(message, record)
    quantity = record.quantity
    if record.price:
        message.price = record.price
    if quantity:
        message.quantity = quantity
    status = outcome.status
    if status is None:
        status = record.status
        filled_quantity = record.filled_quantity
        remaining_quantity = record.remaining_quantity
        engine_seq = record.engine_seq
    else:
        filled_quantity = outcome.filled_quantity
        remaining_quantity = quantity - filled_quantity if status in _OPEN_STATUSES else 0
        engine_seq = outcome.engine_seq
    message.status = _STATUS_TO_PROTO[status]  # type: ignore[assignment]
    if filled_quantity:
        message.filled_quantity = filled_quantity
    if remaining_quantity:
        message.remaining_quantity = remaining_quantity
    if engine_seq:
        message.engine_seq = engine_seq


def fill_fill_message(message: trading_pb2.Fill, record: FillRecord) -> None:
    message.trade_id = str(record.trade_id)
    message.order_id = str(record.order_id)
    message.client_order_id = record.client_order_id
    message.symbol = record.symbol
    message.side = _SIDE_TO_PROTO[record.side]  # type: ignore[assignment]
    message.liquidity = _LIQUIDITY_MAKER if record.is_maker else _LIQUIDITY_TAKER
    message.price = record.price
    message.quantity = record.quantity
    message.quote_quantity = record.quote_quantity
    message.fee = record.fee
    message.fee_asset = record.fee_asset
    message.executed_at.FromNanoseconds(record.executed_ns)
    message.engine_seq = record.engine_seq
