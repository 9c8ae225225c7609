"""A StreamOrders call that breaks (UNAVAILABLE) before answering is reopened and the
batch resent unchanged: the same batch id, the same client_order_ids, a fresh signature -
so a core that did apply it answers with the original orders instead of new ones."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2
from exchange_sdk import Client, PlaceOrder, RetryPolicy, Side

from tests.unit.sdk.markets import BTC_USDT


class FlakyStreamCore:
    """Drops the first stream after reading its batch; answers on the next one."""

    def __init__(self) -> None:
        self.batches: list[trading_pb2.StreamOrdersRequest] = []
        self.signatures: list[str] = []

    def handler(self) -> grpc.GenericRpcHandler:
        def stream(
            requests: Iterator[trading_pb2.StreamOrdersRequest], context: grpc.ServicerContext
        ) -> Iterator[trading_pb2.StreamOrdersResponse]:
            metadata = dict(context.invocation_metadata())
            self.signatures.append(str(metadata["x-signature"]))
            for request in requests:
                self.batches.append(request)
                if len(self.batches) == 1:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "core restarting")
                results = [
                    trading_pb2.OrderCommandResult(
                        order=trading_pb2.Order(
                            order_id=f"o-{command.place.client_order_id}",
                            client_order_id=command.place.client_order_id,
                            symbol=command.place.symbol,
                            price=command.place.price,
                            quantity=command.place.quantity,
                            status=types_pb2.ORDER_STATUS_NEW,
                        )
                    )
                    for command in request.commands
                ]
                yield trading_pb2.StreamOrdersResponse(batch_id=request.batch_id, results=results)

        method: Any = grpc.stream_stream_rpc_method_handler(
            stream,
            request_deserializer=trading_pb2.StreamOrdersRequest.FromString,
            response_serializer=trading_pb2.StreamOrdersResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "exchange.trading.v1.TradingService", {"StreamOrders": method}
        )


@pytest.fixture
def stream_core() -> Iterator[tuple[FlakyStreamCore, int]]:
    core = FlakyStreamCore()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([core.handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield core, port
    server.stop(grace=None)


def test_a_broken_stream_is_reopened_and_the_batch_resent_unchanged(
    stream_core: tuple[FlakyStreamCore, int],
) -> None:
    core, port = stream_core
    retry = RetryPolicy(attempts_max=3, backoff_initial_seconds=0.001)
    with (
        Client(
            f"127.0.0.1:{port}", api_key="k", api_secret="s", retry=retry, markets=[BTC_USDT]
        ) as client,
        client.stream_orders() as stream,
    ):
        result = stream.send(
            [
                PlaceOrder("BTC-USDT", Side.BUY, "0.01", price="49000"),
                PlaceOrder("BTC-USDT", Side.SELL, "0.01", price="51000"),
            ]
        )
        assert len(core.batches) == 2
        assert core.batches[0] == core.batches[1]  # byte-for-byte the same batch
        assert [item.order.client_order_id for item in result.results if item.order] == [
            command.place.client_order_id for command in core.batches[0].commands
        ]
        assert len(set(core.signatures)) == 2  # each opening signed afresh
        second = stream.send([PlaceOrder("BTC-USDT", Side.BUY, "0.02", price="48000")])
        assert second.results[0].ok
