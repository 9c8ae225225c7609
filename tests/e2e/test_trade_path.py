"""The seeds' smoke, as a trader and an operator see it, on the real local exchange: an
order placed with the SDK through Envoy under an idempotency key (placed again: the same
order back), a trade with the other demo account, its TradeExecuted on
`core.trade-events.v1`, the ledger's TRADE entry and balances equal to the core's, and the
trade on the public WebSocket channel with the buyer's private fill; then streaming/ turns
the trade into a 1-minute candle and a 24h ticker: on the WebSocket candle channel, in
ClickHouse (ListCandles through Envoy, forwarded to the streaming process) and in Redis
(GetTicker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from decimal import Decimal

from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange.ledger.v1 import ledger_pb2
from exchange_sdk import ApiCredentials, OrderResult, OrderStatus, Side
from exchange_sdk.websocket import CandleEvent, FillEvent, MarketDataSocket, TradeEvent

from infra.local.components import CORE_SHARD_ID
from tests.support.exchange_access import (
    async_client,
    core_trader_balances,
    find_envelope,
    ledger,
    ledger_trader_balances,
    operator,
    trade_reference,
)
from tests.support.local_stack import StackCommand, wait_until

SYMBOL = "BTC-USDT"
PRICE = Decimal("50000")
QUANTITY = Decimal("0.01")
TRADE_EVENTS_TOPIC = "core.trade-events.v1"


async def test_order_trade_event_ledger_entry_and_websocket(stack: StackCommand) -> None:
    keys = stack.keys()
    alice, bob = keys["demo-alice"], keys["demo-bob"]
    websocket_url = f"ws://{stack.edge_address}/ws"
    async with (
        async_client(stack, alice) as seller,
        async_client(stack, bob) as buyer,
        MarketDataSocket(
            websocket_url, credentials=ApiCredentials(bob.key_id, bob.secret)
        ) as socket,
    ):
        assert await socket.authenticate() == bob.account_id
        await socket.subscribe(f"trades:{SYMBOL}", "fills", f"candles:{SYMBOL}:1m")

        def place_offer() -> Awaitable[OrderResult]:
            return seller.place_order(
                SYMBOL, Side.SELL, QUANTITY, price=PRICE, client_order_id="e2e-offer-1"
            )

        def place_take() -> Awaitable[OrderResult]:
            return buyer.place_order(
                SYMBOL,
                Side.BUY,
                QUANTITY,
                price=PRICE,
                time_in_force="ioc",
                client_order_id="e2e-take-1",
            )

        offer = await place_offer()
        assert offer.order.status is OrderStatus.NEW
        again = await place_offer()
        assert again.order.order_id == offer.order.order_id  # the same order, not a second
        assert await seller.get_order(client_order_id="e2e-offer-1") == again.order

        bought = await place_take()
        assert bought.order.status is OrderStatus.FILLED
        (fill,) = bought.fills
        assert (fill.price, fill.quantity) == (PRICE, QUANTITY)
        assert await place_take() == bought  # the original result: one trade, not two

        # The trade on the WebSocket: the public trade and the buyer's own fill.
        seen_trade = seen_fill = False
        async with asyncio.timeout(20):
            async for event in socket.events(buyer.catalog):
                if isinstance(event, TradeEvent) and event.trade.trade_id == fill.trade_id:
                    assert (event.trade.price, event.trade.quantity) == (PRICE, QUANTITY)
                    assert event.trade.taker_side is Side.BUY
                    seen_trade = True
                if isinstance(event, FillEvent) and event.trade_id == fill.trade_id:
                    assert event.order_id == bought.order.order_id
                    assert (event.side, event.quantity) == (Side.BUY, QUANTITY)
                    seen_fill = True
                if seen_trade and seen_fill:
                    break

        # streaming/ (Quix, after its consumer group joined) turns the trade into the
        # minute's candle: the only trade of this quiet market, so open = close = its price.
        async with asyncio.timeout(60):
            async for event in socket.events(buyer.catalog):
                if isinstance(event, CandleEvent) and event.candle.trade_count >= 1:
                    candle = event.candle
                    assert (candle.open, candle.close, candle.volume) == (PRICE, PRICE, QUANTITY)
                    assert candle.quote_volume == PRICE * QUANTITY
                    break

        # The same candle from ClickHouse (ListCandles through Envoy and the gateway to the
        # streaming process), and the 24h ticker from Redis.
        async def history_has_the_candle() -> bool:
            candles = await buyer.list_candles(SYMBOL)
            return any(c.close == PRICE and c.volume == QUANTITY for c in candles)

        async with asyncio.timeout(30):
            while not await history_has_the_candle():
                await asyncio.sleep(0.2)
        ticker = await buyer.get_ticker(SYMBOL)
        assert (ticker.last, ticker.volume, ticker.trade_count) == (PRICE, QUANTITY, 1)

    # The event on the trade topic, in minor units.
    envelope = await find_envelope(
        stack.broker_address,
        TRADE_EVENTS_TOPIC,
        lambda envelope: envelope.trade_executed.trade_id == fill.trade_id,
    )
    trade = envelope.trade_executed
    assert (envelope.symbol, envelope.shard_id) == (SYMBOL, CORE_SHARD_ID)
    assert (trade.price, trade.quantity) == (50_000 * 10**6, 10**6)
    assert (trade.maker_account_id, trade.taker_account_id) == (alice.account_id, bob.account_id)
    assert (trade.maker_order_id, trade.taker_order_id) == (
        offer.order.order_id,
        bought.order.order_id,
    )

    # The ledger's entry for that trade, and both traders' balances equal to the core's.
    def trade_entries() -> list[ledger_types_pb2.JournalEntry]:
        with ledger(stack) as service:
            answer = service.ListEntries(
                ledger_pb2.ListEntriesRequest(
                    kind=ledger_types_pb2.ENTRY_KIND_TRADE,
                    reference=trade_reference(fill.trade_id),
                ),
                metadata=operator(),
                timeout=10,
            )
        return list(answer.entries)

    wait_until("the ledger posted the trade", lambda: bool(trade_entries()))
    (entry,) = trade_entries()
    assert entry.source_event_id == envelope.event_id
    moves = {
        (posting.account.owner_id, posting.account.asset, posting.account.kind): posting.amount
        for posting in entry.postings
    }
    assert moves[(bob.account_id, "BTC", ledger_types_pb2.ACCOUNT_KIND_AVAILABLE)] == 10**6
    assert moves[(alice.account_id, "BTC", ledger_types_pb2.ACCOUNT_KIND_HELD)] == -(10**6)
    assert sum(amount for (_owner, asset, _kind), amount in moves.items() if asset == "USDT") == 0
    for key in (alice, bob):
        wait_until(
            f"the ledger's balances of {key.account_id} equal the core's",
            lambda key=key: (  # type: ignore[misc]
                ledger_trader_balances(stack, key.account_id)
                == core_trader_balances(stack, key.account_id)
            ),
        )
