"""A stand-in for the trading core behind Envoy, until the real core's service is wired
in: a small TradingService that keeps orders per account and answers with the identity
metadata it received, so tests can see exactly what Envoy forwarded.

It follows the contract where the edge's tests look: the account comes only from
`x-exchange-account-id`; another account's order is ORDER_NOT_FOUND; a repeated
client_order_id returns the original order.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

IDENTITY_PREFIX = "x-exchange-"


@dataclass
class Call:
    method: str
    metadata: dict[str, str]


@dataclass
class StandInCore(trading_pb2_grpc.TradingServiceServicer):
    calls: list[Call] = field(default_factory=list)
    _orders: dict[str, trading_pb2.Order] = field(default_factory=dict)
    _by_client_id: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1

    def _account(self, method: str, context: grpc.ServicerContext) -> str:
        metadata = {
            name: value
            for name, value in context.invocation_metadata()
            if isinstance(value, str) and name.startswith(IDENTITY_PREFIX)
        }
        with self._lock:
            self.calls.append(Call(method, metadata))
        account = metadata.get("x-exchange-account-id", "")
        if not account:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING", "no account")
        return account

    def PlaceOrder(  # noqa: N802 - the generated servicer's method name
        self, request: trading_pb2.PlaceOrderRequest, context: grpc.ServicerContext
    ) -> trading_pb2.PlaceOrderResponse:
        account = self._account("PlaceOrder", context)
        with self._lock:
            known = self._by_client_id.get((account, request.client_order_id))
            if known is None:
                order_id = str(self._next_id)
                self._next_id += 1
                self._orders[order_id] = trading_pb2.Order(
                    order_id=order_id,
                    client_order_id=request.client_order_id,
                    account_id=account,
                    symbol=request.symbol,
                    side=request.side,
                    order_type=request.order_type,
                    price=request.price,
                    quantity=request.quantity,
                    remaining_quantity=request.quantity,
                    status=types_pb2.ORDER_STATUS_NEW,
                )
                self._by_client_id[(account, request.client_order_id)] = order_id
                known = order_id
            order = self._orders[known]
        return trading_pb2.PlaceOrderResponse(order=order)

    def _own_order(self, account: str, order_id: str, context: grpc.ServicerContext) -> str:
        with self._lock:
            order = self._orders.get(order_id)
        if order is None or order.account_id != account:
            _abort(context, grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND", "no such order")
        return order_id

    def CancelOrder(  # noqa: N802
        self, request: trading_pb2.CancelOrderRequest, context: grpc.ServicerContext
    ) -> trading_pb2.CancelOrderResponse:
        account = self._account("CancelOrder", context)
        order_id = self._own_order(account, request.order_id, context)
        with self._lock:
            order = self._orders[order_id]
            order.status = types_pb2.ORDER_STATUS_CANCELLED
            order.remaining_quantity = 0
        return trading_pb2.CancelOrderResponse(order=order)

    def GetOrder(  # noqa: N802
        self, request: trading_pb2.GetOrderRequest, context: grpc.ServicerContext
    ) -> trading_pb2.GetOrderResponse:
        account = self._account("GetOrder", context)
        order_id = self._own_order(account, request.order_id, context)
        return trading_pb2.GetOrderResponse(order=self._orders[order_id])

    def ListAccountBalances(  # noqa: N802
        self, request: trading_pb2.ListAccountBalancesRequest, context: grpc.ServicerContext
    ) -> trading_pb2.ListAccountBalancesResponse:
        account = self._account("ListAccountBalances", context)
        # One balance whose asset names the account: enough to see whose balances these are.
        balance = types_pb2.Balance(asset=f"USDT-of-{account}", available=1_000_000)
        return trading_pb2.ListAccountBalancesResponse(balances=[balance])


def _abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, reason: str, text: str
) -> NoReturn:
    status = status_pb2.Status(code=code.value[0], message=f"{reason}: {text}")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="exchange"))
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returns only by raising")


def start_standin_core() -> tuple[StandInCore, grpc.Server, int]:
    """The stand-in on a free loopback port: (servicer, server, port)."""
    core = StandInCore()  # type: ignore[abstract]  # only what the edge's tests call
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trading_pb2_grpc.add_TradingServiceServicer_to_server(core, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return core, server, port
