"""History for the market-data projection's restart checks (tests/integration/market_data,
bench/projection_restart_bench.py): random traders straight on the core's gRPC (limit orders
that rest or cross, IOC takers, cancels, deposits) on BTC-USDT, and the core's own view of
every book, balance and resting order to compare the gateway's projection with.

The core's view comes from its trading and admin reads (ListOrders of every trader,
GetEngineBalances, GetEngineStatus), not from GetProjectionSnapshot, so a projection that
started from that snapshot is checked against independent answers. Books are the sums of
the resting orders per price, as the engine's own levels are.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from grpc import aio

from common.topics import RETENTION_MS_DEFAULT
from core.outbox import CORE_EVENTS_TOPIC
from core.service.testing import create_btc_usdt, deposit, operator, trader

SYMBOL: Final = "BTC-USDT"
TRADERS: Final = tuple(f"acct-{number}" for number in range(1, 5))
USDT: Final = 10**6
BTC: Final = 10**8
MID: Final = 50_000 * USDT
RESTING_MAX_PER_TRADER: Final = 40
# How old records leave the log in the test: "recreate" deletes and recreates the topic
# (Tansu 0.6 applies no retention.ms and has no DeleteRecords; the log is then empty and its
# offsets start at 0 again), "delete-records" moves the log start to the end with
# DeleteRecords (what retention does, on a broker that implements it), "retention-ms" sets
# the topic's retention.ms short until the broker's own retention emptied the log, then
# back (a broker that applies retention.ms; not runnable on Tansu, so not run here yet).
RETENTION_MODES: Final = ("recreate", "delete-records", "retention-ms")
SHORT_RETENTION_MS: Final = 100
RETENTION_WAIT_SECONDS: Final = 120.0


async def list_and_fund(channel: aio.Channel) -> None:
    await create_btc_usdt(channel)
    for account in TRADERS:
        await deposit(channel, account, "USDT", 100_000_000 * USDT)
        await deposit(channel, account, "BTC", 10_000 * BTC)


async def setup_market(core_address: str) -> None:
    """`list_and_fund` on a channel of its own."""
    async with aio.insecure_channel(core_address) as channel:
        await list_and_fund(channel)


@dataclass
class Traders:
    """Random orders of TRADERS; `resting` are the ids each may cancel later."""

    seed: int
    deposits: int = 0
    placed: int = 0
    cancels: int = 0
    cancels_too_late: int = 0
    resting: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    async def run(self, channel: aio.Channel, orders: int, *, concurrency: int = 4) -> None:
        """`orders` commands (placements, ~1 in 8 a cancel, ~1 in 50 a deposit)."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in range(orders):
            queue.put_nowait(number)
        trading: trading_pb2_grpc.TradingServiceAsyncStub = trading_pb2_grpc.TradingServiceStub(
            channel
        )

        async def worker(account: str) -> None:
            while not queue.empty():
                queue.get_nowait()
                await self._one(channel, trading, account)

        await asyncio.gather(*(worker(TRADERS[n % len(TRADERS)]) for n in range(concurrency)))

    async def _one(
        self, channel: aio.Channel, trading: trading_pb2_grpc.TradingServiceAsyncStub, account: str
    ) -> None:
        choice = self._random.random()
        resting = self.resting[account]
        if resting and (choice < 0.12 or len(resting) >= RESTING_MAX_PER_TRADER):
            order_id = resting.pop(self._random.randrange(len(resting)))
            self.cancels += 1
            try:
                await trading.CancelOrder(
                    trading_pb2.CancelOrderRequest(
                        order_id=order_id, request_id=f"c{self.seed}-{self.cancels}"
                    ),
                    metadata=trader(account),
                )
            except aio.AioRpcError as error:
                if "ORDER_NOT_OPEN" not in (error.details() or ""):
                    raise  # only a filled order may fail to cancel
                self.cancels_too_late += 1
            return
        if choice > 0.98:
            self.deposits += 1
            funding: funding_pb2_grpc.FundingServiceAsyncStub = funding_pb2_grpc.FundingServiceStub(
                channel
            )
            await funding.CreateDeposit(
                funding_pb2.CreateDepositRequest(
                    transfer_id=f"d{self.seed}-{self.deposits}",
                    account_id=account,
                    asset="USDT",
                    amount=(self.deposits % 7 + 1) * USDT,
                ),
                metadata=operator(),
            )
            return
        side = self._random.choice((types_pb2.SIDE_BUY, types_pb2.SIDE_SELL))
        taker = choice > 0.8
        offset = self._random.randint(0, 30) * USDT
        if taker:  # through the book: trades, IOC
            price = MID + 40 * USDT if side == types_pb2.SIDE_BUY else MID - 40 * USDT
        else:  # on its side of the mid: rests (until a taker comes)
            price = MID - offset - USDT if side == types_pb2.SIDE_BUY else MID + offset + USDT
        self.placed += 1
        response = await trading.PlaceOrder(
            trading_pb2.PlaceOrderRequest(
                client_order_id=f"p{self.seed}-{self.placed}",
                symbol=SYMBOL,
                side=side,
                order_type=types_pb2.ORDER_TYPE_LIMIT,
                time_in_force=types_pb2.TIME_IN_FORCE_IOC if taker else types_pb2.TIME_IN_FORCE_GTC,
                price=price,
                quantity=self._random.randint(1, 20) * BTC // 100,
                self_trade_prevention=types_pb2.SELF_TRADE_PREVENTION_CANCEL_NEWEST,
            ),
            metadata=trader(account),
        )
        if response.order.status in (
            types_pb2.ORDER_STATUS_NEW,
            types_pb2.ORDER_STATUS_PARTIALLY_FILLED,
        ):
            resting.append(response.order.order_id)


async def trade(core_address: str, traders: Traders, orders: int) -> None:
    """`traders.run` on a channel of its own."""
    async with aio.insecure_channel(core_address) as channel:
        await traders.run(channel, orders)


async def core_view(channel: aio.Channel) -> dict[str, Any]:
    """The core's books, non-zero balances and resting orders, shaped as the gateway's
    `/internal/market-data/state` (gateway/market_data/introspection.py)."""
    trading: trading_pb2_grpc.TradingServiceAsyncStub = trading_pb2_grpc.TradingServiceStub(channel)
    admin: core_admin_pb2_grpc.CoreAdminServiceAsyncStub = core_admin_pb2_grpc.CoreAdminServiceStub(
        channel
    )
    orders: list[list[Any]] = []
    for account in TRADERS:
        token = ""
        while True:
            page = await trading.ListOrders(
                trading_pb2.ListOrdersRequest(open_only=True, page_size=500, page_token=token),
                metadata=trader(account),
            )
            orders.extend(
                [o.order_id, o.account_id, o.symbol, o.side, o.price, o.remaining_quantity]
                for o in page.orders
            )
            token = page.next_page_token
            if not token:
                break
    status = await admin.GetEngineStatus(
        core_admin_pb2.GetEngineStatusRequest(), metadata=operator()
    )
    levels: dict[str, dict[int, dict[int, list[int]]]] = defaultdict(lambda: defaultdict(dict))
    for _order_id, _account, symbol, side, price, remaining in orders:
        level = levels[symbol][side].setdefault(price, [0, 0])
        level[0] += remaining
        level[1] += 1
    books = {}
    for market in status.markets:
        sides = levels[market.symbol]
        books[market.symbol] = {
            "seq": market.seq,
            "bids": [[p, *sides[1][p]] for p in sorted(sides[1], reverse=True)],
            "asks": [[p, *sides[2][p]] for p in sorted(sides[2])],
        }
    balances = await admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(), metadata=operator()
    )
    return {
        "engine_seq": status.engine_seq,
        "books": books,
        "balances": sorted(
            [b.account_id, b.asset, b.available, b.held]
            for b in balances.balances
            if b.available or b.held
        ),
        "orders": sorted(orders),
    }


def comparable(gateway_state: dict[str, Any]) -> dict[str, Any]:
    """The gateway's state in `core_view`'s shape (zero balances left out)."""
    return {
        "books": {
            symbol: {"seq": book["seq"], "bids": book["bids"], "asks": book["asks"]}
            for symbol, book in gateway_state["books"].items()
        },
        "balances": sorted(b for b in gateway_state["balances"] if b[2] or b[3]),
        "orders": sorted(gateway_state["orders"]),
    }


def gateway_market_data(http_port: int, path: str = "") -> dict[str, Any]:
    """The gateway's `/internal/market-data` (path "") or `/internal/market-data/state`."""
    url = f"http://127.0.0.1:{http_port}/internal/market-data{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        document: dict[str, Any] = json.loads(response.read())
        return document


async def drop_old_records(bootstrap_servers: str, mode: str, topics: Sequence[str]) -> None:
    """Lets every record of `topics` go, as retention would (see RETENTION_MODES)."""
    if mode not in RETENTION_MODES:
        message = f"retention mode {mode!r} is not one of {RETENTION_MODES}"
        raise ValueError(message)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if mode == "recreate":
            await admin.delete_topics(list(topics))
            configs = {"retention.ms": str(RETENTION_MS_DEFAULT), "cleanup.policy": "delete"}
            await admin.create_topics(
                [NewTopic(topic, 1, 1, topic_configs=configs) for topic in topics]
            )
            return
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, 0) for topic in topics]
            ends = await consumer.end_offsets(partitions)
            if mode == "delete-records":
                await admin.delete_records({tp: RecordsToDelete(end) for tp, end in ends.items()})
                return
            await _retention_ms(admin, topics, str(SHORT_RETENTION_MS))
            try:
                deadline = asyncio.get_running_loop().time() + RETENTION_WAIT_SECONDS
                while await consumer.beginning_offsets(partitions) != ends:
                    if asyncio.get_running_loop().time() > deadline:
                        message = "the broker did not apply retention.ms"
                        raise TimeoutError(message)
                    await asyncio.sleep(0.5)
            finally:
                await _retention_ms(admin, topics, str(RETENTION_MS_DEFAULT))
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def _retention_ms(admin: AIOKafkaAdminClient, topics: Sequence[str], value: str) -> None:
    await admin.alter_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": value})
            for topic in topics
        ]
    )


TOPICS_DROPPED: Final = (CORE_EVENTS_TOPIC,)
