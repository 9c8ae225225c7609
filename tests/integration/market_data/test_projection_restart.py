"""The gateway's market-data projection after its log's old records are gone (docs/adr/0017):
the real core, the Kafka-API broker and the gateway as processes. Trade, let every record of
`core.events.v1` go (EXCHANGE_TEST_LOG_RETENTION, tests/support/projection_traffic.py:
`recreate`, the default, deletes and recreates the topic because Tansu 0.6 applies no
retention.ms and has no DeleteRecords; `delete-records` moves the log start to the end on a
broker that has it; `retention-ms` sets a short retention.ms until the broker's own
retention emptied the log), trade more,
restart the gateway: every book, balance and resting order equals the core's, read from its
trading and admin answers, including the assets and markets whose creation left the log. A
WebSocket book subscriber connected while the gateway starts keeps a chain of diffs without
a gap to the core's book, through live trading after the restart.

The broker is the suite's `kafka_broker` fixture (tests/conftest.py): the one place that
changes when the broker does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
import pytest
from exchange.websocket.v1 import websocket_pb2
from google.protobuf import json_format
from grpc import aio

from core.service.testing import ServerProcess
from infra.local.redis import RedisServer
from tests.integration.edge.harness import GatewayProcess
from tests.support.projection_traffic import (
    SYMBOL,
    TOPICS_DROPPED,
    Traders,
    comparable,
    core_view,
    drop_old_records,
    gateway_market_data,
    setup_market,
    trade,
)

WAIT_SECONDS = 60.0
RETENTION_MODE = os.environ.get("EXCHANGE_TEST_LOG_RETENTION", "recreate")


class Broker(Protocol):
    @property
    def bootstrap_servers(self) -> str: ...


def market_data(gateway: GatewayProcess, path: str = "") -> dict[str, Any]:
    return gateway_market_data(gateway.http_port, path)


def until(probe: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not probe():
        if time.monotonic() > deadline:
            message = f"timed out waiting for {what}"
            raise TimeoutError(message)
        time.sleep(0.1)


async def core_state(core_address: str) -> dict[str, Any]:
    async with aio.insecure_channel(core_address) as channel:
        return await core_view(channel)


def matches_core(gateway: GatewayProcess, core_address: str) -> tuple[bool, dict[str, Any]]:
    expected = asyncio.run(core_state(core_address))
    state = comparable(market_data(gateway, "/state"))
    expected.pop("engine_seq")
    return state == expected, expected


async def _followed_by_book(
    gateway: GatewayProcess, core_address: str, subscriber: BookSubscriber, what: str
) -> dict[str, Any]:
    """Waits until the gateway equals the core, then until the WebSocket subscriber's book
    reached the core's book seq; returns that book."""
    await asyncio.to_thread(until, lambda: matches_core(gateway, core_address)[0], what)
    _, expected = await asyncio.to_thread(matches_core, gateway, core_address)
    book: dict[str, Any] = expected["books"][SYMBOL]
    await asyncio.to_thread(
        until, lambda: subscriber.seq == book["seq"], "the WebSocket book's last diff"
    )
    return book


def gateway_process(
    broker: Broker, core_address: str, redis: RedisServer, log: IO[bytes]
) -> GatewayProcess:
    environment = {"EDGE_BROKER": broker.bootstrap_servers, "EDGE_CORE_ADDRESS": core_address}
    return GatewayProcess(redis_url=redis.url, log=log, environment=environment)


class BookSubscriber:
    """A raw WebSocket client of `book:<SYMBOL>` straight at the gateway: its book from the
    snapshot frame and every diff, and the diffs that did not chain."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seq = -1
        self.gaps = 0
        self.diffs = 0
        self.levels: dict[str, dict[int, tuple[int, int]]] = {"bids": {}, "asks": {}}
        self._task: asyncio.Task[None] | None = None

    def book(self) -> dict[str, Any]:
        bids, asks = self.levels["bids"], self.levels["asks"]
        return {
            "seq": self.seq,
            "bids": [[p, *bids[p]] for p in sorted(bids, reverse=True)],
            "asks": [[p, *asks[p]] for p in sorted(asks)],
        }

    async def run(self, subscribed: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as socket:
            request = {"requestId": "1", "subscribe": {"channels": [f"book:{SYMBOL}"]}}
            await socket.send_str(json.dumps(request))
            async for frame in socket:
                message = json_format.Parse(frame.data, websocket_pb2.ServerMessage())
                kind = message.WhichOneof("message")
                if kind == "book_snapshot":
                    book = message.book_snapshot.book
                    self.seq = book.seq
                    for name in ("bids", "asks"):
                        self.levels[name] = {
                            level.price: (level.quantity, level.order_count)
                            for level in getattr(book, name)
                        }
                    subscribed.set()
                elif kind == "book_update":
                    diff = message.book_update
                    self.diffs += 1
                    if diff.previous_seq != self.seq:
                        self.gaps += 1
                    self.seq = diff.seq
                    for name in ("bids", "asks"):
                        for level in getattr(diff, name):
                            if level.quantity:
                                self.levels[name][level.price] = (level.quantity, level.order_count)
                            else:
                                self.levels[name].pop(level.price, None)


@pytest.fixture
def exchange(
    kafka_broker: Broker, tmp_path: Path
) -> Iterator[tuple[Broker, ServerProcess, RedisServer, Path]]:
    """The suite's broker (tests/conftest.py `kafka_broker`: whatever broker the run uses),
    the real core publishing to it, and Redis for the gateway."""
    with (
        ServerProcess(tmp_path / "core", "--broker", kafka_broker.bootstrap_servers) as core,
        RedisServer() as redis,
    ):
        yield kafka_broker, core, redis, tmp_path


@pytest.mark.slow
def test_a_restarted_gateway_serves_the_cores_state_after_the_log_lost_its_history(
    exchange: tuple[Broker, ServerProcess, RedisServer, Path],
) -> None:
    broker, core, redis, directory = exchange
    traders = Traders(seed=14)

    asyncio.run(setup_market(core.address))
    asyncio.run(trade(core.address, traders, 400))

    with (directory / "gateway-1.log").open("wb") as log:
        gateway = gateway_process(broker, core.address, redis, log)
        gateway.start()
        try:
            until(lambda: matches_core(gateway, core.address)[0], "the first gateway's state")
        finally:
            gateway.stop()

    asyncio.run(drop_old_records(broker.bootstrap_servers, RETENTION_MODE, TOPICS_DROPPED))
    asyncio.run(trade(core.address, traders, 300))  # the core publishes into the emptied log

    async def restart_and_watch() -> tuple[BookSubscriber, dict[str, Any]]:
        with (directory / "gateway-2.log").open("wb") as log:
            gateway = gateway_process(broker, core.address, redis, log)
            gateway.start()
            try:
                subscriber = BookSubscriber(f"ws://127.0.0.1:{gateway.http_port}/ws")
                subscribed = asyncio.Event()
                task = asyncio.create_task(subscriber.run(subscribed))
                await asyncio.wait_for(subscribed.wait(), WAIT_SECONDS)
                await asyncio.to_thread(
                    until,
                    lambda: bool(market_data(gateway)["ready"]),
                    "the restarted gateway to be ready",
                )
                _, expected = await asyncio.to_thread(matches_core, gateway, core.address)
                state = comparable(market_data(gateway, "/state"))
                assert state == expected  # right after the restart, before new traffic
                assert len(expected["orders"]) > 0, "the check needs resting orders"
                status = market_data(gateway)
                assert status["snapshots"] == 1
                assert status["snapshot_engine_seq"] > 0
                assert status["snapshot_offset"] > 0  # the outbox's position in the new log
                gateway_state = market_data(gateway, "/state")
                assert gateway_state["assets"] == ["BTC", "USDT"]  # their events left the log
                assert gateway_state["gaps_seen"] == 0
                await trade(core.address, traders, 300)  # live, after the snapshot
                book = await _followed_by_book(
                    gateway,
                    core.address,
                    subscriber,
                    "the restarted gateway to follow live trading",
                )
                task.cancel()
                return subscriber, book
            finally:
                gateway.stop()

    subscriber, book = asyncio.run(restart_and_watch())
    assert subscriber.gaps == 0
    assert subscriber.diffs > 0
    assert subscriber.book() == book


@pytest.mark.slow
def test_a_gateway_started_after_a_core_restart_resumes_where_the_restarted_core_publishes(
    exchange: tuple[Broker, ServerProcess, RedisServer, Path],
) -> None:
    """The restarted core knows no offset until its outbox acknowledges a round (it may
    publish again what it had published): the gateway waits for one, then equals the core."""
    broker, core, redis, directory = exchange

    asyncio.run(setup_market(core.address))
    asyncio.run(trade(core.address, Traders(seed=1), 300))
    core.stop()
    with (
        ServerProcess(directory / "core", "--broker", broker.bootstrap_servers) as restarted,
        (directory / "gateway.log").open("wb") as log,
    ):
        gateway = gateway_process(broker, restarted.address, redis, log)
        gateway.start()
        try:
            asyncio.run(trade(restarted.address, Traders(seed=2), 200))
            until(lambda: matches_core(gateway, restarted.address)[0], "the gateway's state")
            status = market_data(gateway)
            assert status["snapshots"] == 1
            assert status["snapshot_offset"] > 0
            assert market_data(gateway, "/state")["gaps_seen"] == 0
        finally:
            gateway.stop()


@pytest.mark.slow
def test_a_running_gateway_whose_position_left_the_log_takes_a_new_snapshot(
    exchange: tuple[Broker, ServerProcess, RedisServer, Path],
) -> None:
    """The gateway is paused (SIGSTOP) while the log loses every record and the core trades
    on; resumed, its position is no longer in the log: it takes a new snapshot instead of
    serving a gap, equals the core, and a book subscriber's diffs still chain across it."""
    broker, core, redis, directory = exchange
    traders = Traders(seed=3)

    asyncio.run(setup_market(core.address))
    asyncio.run(trade(core.address, traders, 400))

    async def pause_drop_resume(gateway: GatewayProcess) -> tuple[BookSubscriber, Any]:
        subscriber = BookSubscriber(f"ws://127.0.0.1:{gateway.http_port}/ws")
        subscribed = asyncio.Event()
        task = asyncio.create_task(subscriber.run(subscribed))
        await asyncio.wait_for(subscribed.wait(), WAIT_SECONDS)
        await asyncio.to_thread(
            until, lambda: matches_core(gateway, core.address)[0], "the gateway's first state"
        )
        os.kill(gateway.pid, signal.SIGSTOP)
        try:
            await drop_old_records(broker.bootstrap_servers, RETENTION_MODE, TOPICS_DROPPED)
            await trade(
                core.address, traders, 100
            )  # fewer records than the gateway had read: its position is past
        finally:
            os.kill(gateway.pid, signal.SIGCONT)
        book = await _followed_by_book(
            gateway, core.address, subscriber, "the resumed gateway to equal the core"
        )
        task.cancel()
        return subscriber, book

    with (directory / "gateway.log").open("wb") as log:
        gateway = gateway_process(broker, core.address, redis, log)
        gateway.start()
        try:
            subscriber, book = asyncio.run(pause_drop_resume(gateway))
            status = market_data(gateway)
            assert status["snapshots"] == 2  # at start, and when the position left the log
            assert market_data(gateway, "/state")["gaps_seen"] == 0
        finally:
            gateway.stop()
    assert subscriber.gaps == 0
    assert subscriber.book() == book
