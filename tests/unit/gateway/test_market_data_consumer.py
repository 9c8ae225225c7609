"""The event-log consumer pushes live updates only: a replayed backlog's trades and private
updates are history (a client of a restarted gateway must not get old fills as new), while
book diffs always go out (they keep a subscriber's book chained to its snapshot)."""

from __future__ import annotations

from dataclasses import dataclass, field

from exchange.websocket.v1 import websocket_pb2

from gateway.fanout import Hub
from gateway.market_data.consumer import ConsumerOptions, EventLogConsumer
from gateway.market_data.projection import (
    MarketDataProjection,
    PrivateUpdate,
    PublicUpdate,
    Update,
)


@dataclass
class _RecordingHub(Hub):
    sent: list[str] = field(default_factory=list)

    def publish(self, channel: str, message: websocket_pb2.ServerMessage) -> None:
        self.sent.append(channel)

    def publish_private(
        self, kind: str, account_id: str, message: websocket_pb2.ServerMessage
    ) -> None:
        self.sent.append(f"{kind}/{account_id}")


def _updates() -> list[Update]:
    message = websocket_pb2.ServerMessage()
    return [
        PublicUpdate("book:BTC-USDT", message),
        PublicUpdate("trades:BTC-USDT", message),
        PrivateUpdate("fills", "alice", message),
        PublicUpdate("ticker:BTC-USDT", message),
    ]


def test_a_replayed_backlog_sends_books_and_latest_state_not_trades_or_private_updates() -> None:
    hub = _RecordingHub()
    consumer = EventLogConsumer(ConsumerOptions("127.0.0.1:1"), MarketDataProjection(), hub)
    assert not consumer.stats.caught_up

    consumer.publish(_updates())

    assert hub.sent == ["book:BTC-USDT", "ticker:BTC-USDT"]
    assert consumer.stats.withheld == 2


def test_once_caught_up_every_update_goes_out() -> None:
    hub = _RecordingHub()
    consumer = EventLogConsumer(ConsumerOptions("127.0.0.1:1"), MarketDataProjection(), hub)
    consumer.stats.caught_up = True

    consumer.publish(_updates())

    assert hub.sent == ["book:BTC-USDT", "trades:BTC-USDT", "fills/alice", "ticker:BTC-USDT"]
    assert consumer.stats.withheld == 0
