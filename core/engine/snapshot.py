"""Canonical snapshot of the whole engine state, and its inverse.

Format: UTF-8 JSON with sorted keys, no whitespace, ASCII only, integers only (no float can
appear: every number in the state is an int). Everything that is ordered in the state is a
list in that order: books in priority order (levels best first, FIFO within a level),
idempotency tables oldest first; everything unordered is sorted (balances by (account, asset),
markets by symbol, assets by code). Equal states therefore give equal bytes, and
`Engine.state_hash()` is sha256 of these bytes.

What is NOT in the snapshot because it cannot change behaviour: lazily deleted book entries
(dead entries are skipped by matching and dropped on restore) and derived indexes (open orders
per account, live client order ids, level aggregates, each market's cache of its accounts'
balance cells), which are rebuilt on restore.

`Engine.snapshot()` is `capture_engine(engine).serialize()`: a cheap copy of the state, then
the encoding, which may run in another thread (see "capture, then serialize" below).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Final

from core.engine.balances import Balance
from core.engine.book import BookSide, Order
from core.engine.commands import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Deposit,
    FundingCommand,
    KeyedCommand,
    PlaceOrder,
    SetMarketMode,
    Withdraw,
)
from core.engine.engine import Engine, EngineConfig
from core.engine.enums import (
    MarketMode,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.errors import EngineInvariantError
from core.engine.market import MarketSpec
from core.engine.market_state import Market
from core.engine.results import Outcome

SNAPSHOT_FORMAT_VERSION: Final = 2
# Version 1 lacks the request id tables and `priority_kept` (read as empty / False).
_FORMATS_READ: Final = (1, SNAPSHOT_FORMAT_VERSION)

_ENUM_TYPES: Final[dict[str, Any]] = {
    "Side": Side,
    "OrderType": OrderType,
    "TimeInForce": TimeInForce,
    "SelfTradePrevention": SelfTradePrevention,
    "MarketMode": MarketMode,
}
_FUNDING_TYPES: Final[dict[str, type[FundingCommand]]] = {
    "Deposit": Deposit,
    "Withdraw": Withdraw,
    "AdjustBalance": AdjustBalance,
}
_KEYED_TYPES: Final[dict[str, type[KeyedCommand]]] = {
    "CancelOrder": CancelOrder,
    "CancelAllOrders": CancelAllOrders,
    "AmendOrder": AmendOrder,
    "SetMarketMode": SetMarketMode,
}


_ORDER_FIELDS: Final = (
    "order_id",
    "account_id",
    "client_order_id",
    "side",
    "order_type",
    "time_in_force",
    "post_only",
    "self_trade_prevention",
    "price",
    "quantity",
    "quote_quantity",
    "filled_quantity",
    "quantity_remaining",
    "reserved_amount",
    "fee_ppm_units",
    "fees_paid",
    "status",
)
# The snapshot's keys for those fields: the attribute names, but for two that the engine renamed
# to the contracts' words after format 2 was written (its bytes, and the state hash, keep them).
_ORDER_KEYS: Final = tuple(
    {"filled_quantity": "quantity_filled", "fees_paid": "fee_paid"}.get(name, name)
    for name in _ORDER_FIELDS
)
# C-level getters: one call copies an object's fields into a tuple (the capture's hot loop).
_order_values: Final = attrgetter(*_ORDER_FIELDS)
_balance_values: Final = attrgetter("account_id", "asset", "available", "held")
# Elements per json.dumps call when serializing a long list: the C encoder holds the GIL for a
# whole call, so a worker thread serializing a big state yields it between chunks (128 resting
# orders are ~50 KB of JSON, ~1 ms).
SERIALIZE_CHUNK_ITEMS: Final = 128

_field_names_by_type: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _field_names_by_type.get(cls)
    if names is None:
        names = _field_names_by_type[cls] = tuple(field.name for field in fields(cls))
    return names


def _dataclass_to_dict(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in _field_names(type(value))}


def _dataclass_from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for field in fields(cls):
        raw = data[field.name]
        enum_type = _ENUM_TYPES.get(str(field.type))
        values[field.name] = enum_type(raw) if enum_type is not None else raw
    return cls(**values)


def _outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    return {
        "engine_seq": outcome.engine_seq,
        "reason": outcome.reason,
        "order_id": outcome.order_id,
        "status": outcome.status,
        "quantity_filled": outcome.filled_quantity,  # the format's key (see _ORDER_KEYS)
        "cancelled_order_ids": list(outcome.cancelled_order_ids),
        "priority_kept": outcome.priority_kept,
    }


def _outcome_from_dict(data: dict[str, Any]) -> Outcome:
    return Outcome(
        engine_seq=data["engine_seq"],
        reason=None if data["reason"] is None else RejectReason(data["reason"]),
        order_id=data["order_id"],
        status=None if data["status"] is None else OrderStatus(data["status"]),
        filled_quantity=data["quantity_filled"],
        cancelled_order_ids=tuple(data["cancelled_order_ids"]),
        priority_kept=data.get("priority_kept", False),
    )


# ---------------------------------------------------------------- capture, then serialize
#
# `capture_engine` runs on the engine's thread and copies the mutable state into values that
# nothing mutates afterwards: tuples of ints, strings and enums, frozen dataclasses (commands,
# outcomes, specs, config) and dict copies owned by the capture. It is O(state) but does no
# encoding. `SnapshotCapture.serialize()` can then run in any thread, concurrently with
# further commands, and returns exactly the bytes `Engine.snapshot()` returned at capture time
# (`Engine.snapshot()` is itself `capture_engine(engine).serialize()`).


@dataclass(frozen=True, slots=True)
class _MarketCapture:
    spec: MarketSpec
    mode: MarketMode
    reference_price: int
    stream_seq: int
    bids: list[tuple[Any, ...]]  # _ORDER_FIELDS values, priority order
    asks: list[tuple[Any, ...]]


_AccountTables = dict[str, dict[Any, Any]]  # account id -> its entries, oldest first


@dataclass(frozen=True, slots=True)
class SnapshotCapture:
    """A consistent, immutable copy of the engine state at `engine_seq_last`.

    Cheap to take (copies, no encoding); `serialize()` is safe in a worker thread.
    """

    config: EngineConfig
    engine_seq_last: int
    trade_id_last: int
    account_stream_seq: int
    assets: list[list[Any]]
    markets: list[_MarketCapture]
    balances: list[tuple[str, str, int, int]]  # unsorted
    order_requests: _AccountTables
    transfer_requests: _AccountTables
    closed_orders: _AccountTables
    command_requests: _AccountTables
    operator_requests: _AccountTables

    def serialize(self) -> bytes:
        """The canonical snapshot bytes (identical to `Engine.snapshot()` at capture time)."""
        return _serialize(self)


def _side_capture(side: BookSide) -> list[tuple[Any, ...]]:
    return side.live_order_values(_order_values)


def capture_engine(engine: Engine) -> SnapshotCapture:
    markets = []
    for symbol in sorted(engine._markets):
        market = engine._markets[symbol]
        markets.append(
            _MarketCapture(
                spec=market.spec,
                mode=market.mode,
                reference_price=market.reference_price,
                stream_seq=market.stream_seq,
                bids=_side_capture(market.book.bids),
                asks=_side_capture(market.book.asks),
            )
        )
    return SnapshotCapture(
        config=engine.config,
        engine_seq_last=engine._engine_seq_last,
        trade_id_last=engine._trade_id_last,
        account_stream_seq=engine._account_stream_seq,
        assets=[
            [asset, engine._asset_scales[asset], engine._asset_supply[asset]]
            for asset in sorted(engine._asset_scales)
        ],
        markets=markets,
        balances=list(map(_balance_values, engine._balances.values())),
        # Values are immutable (frozen commands and outcomes, enums): per-account dict copies
        # are a consistent copy. Sorting by account is left to serialize().
        order_requests=engine._order_requests.copy_tables(),
        transfer_requests=engine._transfer_requests.copy_tables(),
        closed_orders=engine._closed_orders.copy_tables(),
        command_requests=engine._command_requests.copy_tables(),
        operator_requests=engine._operator_requests.copy_tables(),
    )


class _Chunked:
    """A JSON array encoded `SERIALIZE_CHUNK_ITEMS` elements per json.dumps call; `convert`
    turns a captured item into its JSON value just before encoding (short-lived objects)."""

    __slots__ = ("convert", "items")

    def __init__(self, items: list[Any], convert: Callable[[Any], Any]) -> None:
        self.items = items
        self.convert = convert


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _encode(value: Any, out: list[bytes]) -> None:
    """Append json.dumps(value, sort_keys=True, separators=(",", ":")).encode() to `out`, for
    a value whose big arrays are `_Chunked`: the same text, since an array is "[" +
    ",".join(elements) + "]" and an object "{" + ",".join(key:value, sorted by key) + "}".
    Pieces go to one list and are joined once, so no big string is copied per nesting level."""
    if isinstance(value, _Chunked):
        items = value.items
        convert = value.convert
        out.append(b"[")
        for start in range(0, len(items), SERIALIZE_CHUNK_ITEMS):
            if start:
                out.append(b",")
            chunk = [convert(item) for item in items[start : start + SERIALIZE_CHUNK_ITEMS]]
            out.append(_dumps(chunk)[1:-1].encode())
        out.append(b"]")
    elif isinstance(value, dict):
        out.append(b"{")
        for index, key in enumerate(sorted(value)):
            out.append(b"," + _dumps(key).encode() + b":" if index else _dumps(key).encode() + b":")
            _encode(value[key], out)
        out.append(b"}")
    elif isinstance(value, list):
        out.append(b"[")
        for index, item in enumerate(value):
            if index:
                out.append(b",")
            _encode(item, out)
        out.append(b"]")
    else:
        out.append(_dumps(value).encode())


def _order_dict(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(_ORDER_KEYS, values, strict=True))


def _balance_list(values: tuple[str, str, int, int]) -> list[Any]:
    return list(values)


def _order_requests_entry(item: tuple[str, dict[str, Any]]) -> list[Any]:
    account_id, entries = item
    return [
        account_id,
        [
            [key, _dataclass_to_dict(command), _outcome_to_dict(outcome)]
            for key, (command, outcome) in entries.items()
        ],
    ]


def _typed_requests_entry(item: tuple[str, dict[str, Any]]) -> list[Any]:
    account_id, entries = item
    return [
        account_id,
        [
            [key, type(command).__name__, _dataclass_to_dict(command), _outcome_to_dict(outcome)]
            for key, (command, outcome) in entries.items()
        ],
    ]


def _closed_orders_entry(item: tuple[str, dict[int, Any]]) -> list[Any]:
    account_id, entries = item
    return [account_id, [[order_id, status] for order_id, status in entries.items()]]


def _serialize(capture: SnapshotCapture) -> bytes:
    state = {
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "config": _dataclass_to_dict(capture.config),
        "engine_seq_last": capture.engine_seq_last,
        "trade_id_last": capture.trade_id_last,
        "account_stream_seq": capture.account_stream_seq,
        "assets": capture.assets,
        "markets": [
            {
                "spec": _dataclass_to_dict(market.spec),
                "mode": market.mode,
                "reference_price": market.reference_price,
                "stream_seq": market.stream_seq,
                "bids": _Chunked(market.bids, _order_dict),
                "asks": _Chunked(market.asks, _order_dict),
            }
            for market in capture.markets
        ],
        "balances": _Chunked(sorted(capture.balances), _balance_list),
        "order_requests": _Chunked(sorted(capture.order_requests.items()), _order_requests_entry),
        "transfer_requests": _Chunked(
            sorted(capture.transfer_requests.items()), _typed_requests_entry
        ),
        "closed_orders": _Chunked(sorted(capture.closed_orders.items()), _closed_orders_entry),
        "command_requests": _Chunked(
            sorted(capture.command_requests.items()), _typed_requests_entry
        ),
        "operator_requests": _Chunked(
            sorted(capture.operator_requests.items()), _typed_requests_entry
        ),
    }
    out: list[bytes] = []
    _encode(state, out)
    return b"".join(out)


def _restore_order(engine: Engine, market: Market, data: dict[str, Any]) -> Order:
    side = Side(data["side"])
    account_id = data["account_id"]
    base_cell = engine._balances[(account_id, market.base_asset)]
    quote_cell = engine._balances[(account_id, market.quote_asset)]
    order = Order(
        order_id=data["order_id"],
        account_id=account_id,
        symbol=market.symbol,
        client_order_id=data["client_order_id"],
        side=side,
        order_type=OrderType(data["order_type"]),
        time_in_force=TimeInForce(data["time_in_force"]),
        post_only=data["post_only"],
        self_trade_prevention=SelfTradePrevention(data["self_trade_prevention"]),
        price=data["price"],
        quantity=data["quantity"],
        quote_quantity=data["quote_quantity"],
        reserve_balance=quote_cell if side is Side.BUY else base_cell,
        proceeds_balance=base_cell if side is Side.BUY else quote_cell,
    )
    order.filled_quantity = data["quantity_filled"]
    order.quantity_remaining = data["quantity_remaining"]
    order.reserved_amount = data["reserved_amount"]
    order.fee_ppm_units = data["fee_ppm_units"]
    order.fees_paid = data["fee_paid"]
    order.status = OrderStatus(data["status"])
    return order


def decode_engine(data: bytes) -> Engine:  # noqa: PLR0912  (one loop per table)
    state = json.loads(data)
    if state.get("format_version") not in _FORMATS_READ:
        msg = f"unsupported snapshot format {state.get('format_version')!r}"
        raise EngineInvariantError(msg)
    engine = Engine(EngineConfig(**state["config"]))
    engine._engine_seq_last = state["engine_seq_last"]
    engine._trade_id_last = state["trade_id_last"]
    engine._account_stream_seq = state["account_stream_seq"]
    for asset, scale, supply in state["assets"]:
        engine._asset_scales[asset] = scale
        engine._asset_supply[asset] = supply
    for account_id, asset, available, held in state["balances"]:
        engine._balances[(account_id, asset)] = Balance(account_id, asset, available, held)
    for market_data in state["markets"]:
        spec = _dataclass_from_dict(MarketSpec, market_data["spec"])
        market = Market(spec)
        market.mode = MarketMode(market_data["mode"])
        market.reference_price = market_data["reference_price"]
        market.stream_seq = market_data["stream_seq"]
        engine._markets[spec.symbol] = market
        for side_name in ("bids", "asks"):
            for order_data in market_data[side_name]:
                engine._rest(market, _restore_order(engine, market, order_data))
    for account_id, entries in state["order_requests"]:
        for key, command_data, outcome_data in entries:
            command = _dataclass_from_dict(PlaceOrder, command_data)
            engine._order_requests.put(account_id, key, (command, _outcome_from_dict(outcome_data)))
    for account_id, entries in state["transfer_requests"]:
        for key, type_name, command_data, outcome_data in entries:
            funding = _dataclass_from_dict(_FUNDING_TYPES[type_name], command_data)
            engine._transfer_requests.put(
                account_id, key, (funding, _outcome_from_dict(outcome_data))
            )
    for account_id, entries in state["closed_orders"]:
        for order_id, status in entries:
            engine._closed_orders.put(account_id, order_id, OrderStatus(status))
    for name, table in (
        ("command_requests", engine._command_requests),
        ("operator_requests", engine._operator_requests),
    ):
        for caller, entries in state.get(name, []):
            for key, type_name, command_data, outcome_data in entries:
                keyed = _dataclass_from_dict(_KEYED_TYPES[type_name], command_data)
                table.put(caller, key, (keyed, _outcome_from_dict(outcome_data)))
    engine.check_invariants()
    return engine
