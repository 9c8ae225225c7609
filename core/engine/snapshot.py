"""Canonical snapshot of the whole engine state, and its inverse.

Format: UTF-8 JSON with sorted keys, no whitespace, ASCII only, integers only (no float can
appear: every number in the state is an int). Everything that is ordered in the state is a
list in that order: books in priority order (levels best first, FIFO within a level),
idempotency tables oldest first; everything unordered is sorted (balances by (account, asset),
markets by symbol, assets by code). Equal states therefore give equal bytes, and
`Engine.state_hash()` is sha256 of these bytes.

What is NOT in the snapshot because it cannot change behaviour: lazily deleted book entries
(dead entries are skipped by matching and dropped on restore) and derived indexes (open orders
per account, live client order ids, level aggregates), which are rebuilt on restore.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Final

from core.engine.balances import Balance
from core.engine.book import Order
from core.engine.commands import (
    AdjustBalance,
    Deposit,
    FundingCommand,
    PlaceOrder,
    Withdraw,
)
from core.engine.engine import Engine, EngineConfig, Market
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
from core.engine.results import Outcome

SNAPSHOT_FORMAT_VERSION: Final = 1

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


def _dataclass_to_dict(value: Any) -> dict[str, Any]:
    return {field.name: getattr(value, field.name) for field in fields(value)}


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
        "quantity_filled": outcome.quantity_filled,
        "cancelled_order_ids": list(outcome.cancelled_order_ids),
    }


def _outcome_from_dict(data: dict[str, Any]) -> Outcome:
    return Outcome(
        engine_seq=data["engine_seq"],
        reason=None if data["reason"] is None else RejectReason(data["reason"]),
        order_id=data["order_id"],
        status=None if data["status"] is None else OrderStatus(data["status"]),
        quantity_filled=data["quantity_filled"],
        cancelled_order_ids=tuple(data["cancelled_order_ids"]),
    )


def _order_to_dict(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "side": order.side,
        "order_type": order.order_type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "self_trade_prevention": order.self_trade_prevention,
        "price": order.price,
        "quantity": order.quantity,
        "quote_quantity": order.quote_quantity,
        "quantity_filled": order.quantity_filled,
        "quantity_remaining": order.quantity_remaining,
        "reserved_amount": order.reserved_amount,
        "fee_ppm_units": order.fee_ppm_units,
        "fee_paid": order.fee_paid,
        "status": order.status,
    }


def encode_engine(engine: Engine) -> bytes:
    markets = []
    for symbol in sorted(engine._markets):
        market = engine._markets[symbol]
        markets.append(
            {
                "spec": _dataclass_to_dict(market.spec),
                "mode": market.mode,
                "reference_price": market.reference_price,
                "stream_seq": market.stream_seq,
                "bids": [_order_to_dict(o) for o in market.book.bids.orders_in_priority()],
                "asks": [_order_to_dict(o) for o in market.book.asks.orders_in_priority()],
            }
        )
    state = {
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "config": _dataclass_to_dict(engine.config),
        "engine_seq_last": engine._engine_seq_last,
        "trade_id_last": engine._trade_id_last,
        "account_stream_seq": engine._account_stream_seq,
        "assets": [
            [asset, engine._asset_scales[asset], engine._asset_supply[asset]]
            for asset in sorted(engine._asset_scales)
        ],
        "markets": markets,
        "balances": [
            [account_id, asset, cell.available, cell.held]
            for (account_id, asset), cell in sorted(engine._balances.items())
        ],
        "order_requests": [
            [
                account_id,
                [
                    [key, _dataclass_to_dict(command), _outcome_to_dict(outcome)]
                    for key, (command, outcome) in entries
                ],
            ]
            for account_id, entries in engine._order_requests.accounts_sorted()
        ],
        "transfer_requests": [
            [
                account_id,
                [
                    [
                        key,
                        type(command).__name__,
                        _dataclass_to_dict(command),
                        _outcome_to_dict(outcome),
                    ]
                    for key, (command, outcome) in entries
                ],
            ]
            for account_id, entries in engine._transfer_requests.accounts_sorted()
        ],
        "closed_orders": [
            [account_id, [[order_id, status] for order_id, status in entries]]
            for account_id, entries in engine._closed_orders.accounts_sorted()
        ],
    }
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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
    order.quantity_filled = data["quantity_filled"]
    order.quantity_remaining = data["quantity_remaining"]
    order.reserved_amount = data["reserved_amount"]
    order.fee_ppm_units = data["fee_ppm_units"]
    order.fee_paid = data["fee_paid"]
    order.status = OrderStatus(data["status"])
    return order


def decode_engine(data: bytes) -> Engine:
    state = json.loads(data)
    if state.get("format_version") != SNAPSHOT_FORMAT_VERSION:
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
    engine.check_invariants()
    return engine
