"""The asyncio client and the streaming order entry (StreamOrders) through the real edge:
batches of commands with per-command results and rejections, a batch resent unchanged
returns the original results, and both clients see the same orders."""

from __future__ import annotations

from decimal import Decimal

from exchange_sdk import (
    AsyncClient,
    CancelAllOrders,
    CancelOrder,
    OrderStatus,
    PlaceOrder,
    Side,
    new_idempotency_key,
)

from tests.integration.edge.harness import BOB
from tests.integration.sdk.conftest import MARKET_SPECS, SdkEdge


async def test_async_place_list_and_cancel(sdk_edge: SdkEdge) -> None:
    async with AsyncClient(
        sdk_edge.endpoint, api_key=BOB[0], api_secret=BOB[1], markets=MARKET_SPECS
    ) as client:
        placed = await client.place_order("ETH-USDT", Side.SELL, "1.5", price="3100")
        assert placed.order.status is OrderStatus.NEW
        listed = await client.list_orders("ETH-USDT", open_only=True)
        assert placed.order.order_id in {order.order_id for order in listed.items}
        balances = await client.get_balances("ETH")
        assert balances["ETH"].held >= Decimal("1.5")
        cancelled = await client.cancel_order(client_order_id=placed.order.client_order_id)
        assert cancelled.status is OrderStatus.CANCELLED


def test_stream_orders_batches_with_the_sync_client(sdk_edge: SdkEdge) -> None:
    keys = [new_idempotency_key() for _ in range(3)]
    commands = [
        PlaceOrder("BTC-USDT", Side.BUY, "0.01", price="49000", client_order_id=keys[0]),
        PlaceOrder("BTC-USDT", Side.SELL, "0.01", price="51000", client_order_id=keys[1]),
        # Rejected on its own: the batch's other commands are unaffected.
        PlaceOrder("BTC-USDT", Side.BUY, "90", price="49000", client_order_id=keys[2]),
    ]
    with sdk_edge.client(BOB) as client, client.stream_orders() as stream:
        result = stream.send(commands, batch_id="batch-1")
        assert result.batch_id == "batch-1"
        assert [item.ok for item in result.results] == [True, True, False]
        assert result.errors[0].reason == "INSUFFICIENT_BALANCE"
        bid = result.results[0].order
        assert bid is not None
        assert bid.price == Decimal("49000")

        # The same batch again (what a resend after a broken stream does): the originals.
        again = stream.send(commands, batch_id="batch-1")
        assert [item.order for item in again.results[:2]] == [
            item.order for item in result.results[:2]
        ]

        cancels = stream.send(
            [CancelOrder("BTC-USDT", order_id=bid.order_id), CancelAllOrders("BTC-USDT")]
        )
        assert cancels.results[0].order is not None
        assert cancels.results[0].order.status is OrderStatus.CANCELLED
        assert cancels.results[1].cancelled_count == 1
        assert client.list_orders("BTC-USDT", open_only=True).items == ()


async def test_stream_orders_with_the_async_client(sdk_edge: SdkEdge) -> None:
    client = AsyncClient(sdk_edge.endpoint, api_key=BOB[0], api_secret=BOB[1], markets=MARKET_SPECS)
    async with client, client.stream_orders() as stream:
        placed = await stream.send(
            [PlaceOrder("ETH-USDT", Side.BUY, "0.1", price=f"{2900 + step}") for step in range(5)]
        )
        assert all(item.ok for item in placed.results)
        cancelled = await stream.send([CancelAllOrders("ETH-USDT")])
        assert cancelled.results[0].cancelled_count == 5
