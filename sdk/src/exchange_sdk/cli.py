"""``exchange``: the command line of the SDK.

    exchange place BTC-USDT buy 0.01 --price 50000
    exchange cancel ORDER_ID            exchange orders --open
    exchange balances                   exchange book BTC-USDT
    exchange trades BTC-USDT            exchange watch trades:BTC-USDT --count 10

Connection and key: see ``exchange_sdk.config`` (flags, ``EXCHANGE_*`` environment, or
``var/demo-keys.json``). Output is a readable table, or JSON lines with ``--json``
(amounts as decimal strings, never floats). Exit status: 0 ok, 1 the exchange refused (the
reason is printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO

from google.protobuf import json_format

from exchange_sdk.client import Client
from exchange_sdk.config import ConnectionSettings, resolve_settings
from exchange_sdk.errors import ExchangeError
from exchange_sdk.models import Balance, Order, OrderBook, PublicTrade
from exchange_sdk.websocket import PRIVATE_CHANNELS, MarketDataSocket, RawEvent, to_event

ClientFactory = Callable[[ConnectionSettings], Client]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchange", description="Trade on the exchange.")
    parser.add_argument("--endpoint", help="Envoy's gRPC address, host:port")
    parser.add_argument("--http-url", help="Envoy's HTTP base URL (WebSocket)")
    parser.add_argument("--api-key")
    parser.add_argument("--api-secret")
    parser.add_argument("--keys-file", help="a var/demo-keys.json-style file")
    parser.add_argument("--key-name", help="which key of the keys file")
    parser.add_argument("--markets-file", help="saved GET /v1/markets output")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of tables")
    commands = parser.add_subparsers(dest="command", required=True)

    place = commands.add_parser("place", help="place an order")
    place.add_argument("symbol")
    place.add_argument("side", choices=["buy", "sell"])
    place.add_argument("quantity", type=Decimal)
    place.add_argument("--price", type=Decimal, help="limit price (omit for a market order)")
    place.add_argument("--tif", choices=["gtc", "ioc", "fok"])
    place.add_argument("--post-only", action="store_true")
    place.add_argument("--client-order-id")

    cancel = commands.add_parser("cancel", help="cancel an order")
    cancel.add_argument("order_id", nargs="?")
    cancel.add_argument("--client-order-id")
    cancel.add_argument("--all", action="store_true", help="cancel every open order")
    cancel.add_argument("--symbol", help="with --all: only this market")

    orders = commands.add_parser("orders", help="list your orders")
    orders.add_argument("--symbol")
    orders.add_argument("--open", action="store_true", help="only open orders")
    orders.add_argument("--limit", type=int, default=50)

    commands.add_parser("balances", help="your balances")

    book = commands.add_parser("book", help="a market's order book")
    book.add_argument("symbol")
    book.add_argument("--depth", type=int, default=10)

    trades = commands.add_parser("trades", help="a market's recent trades")
    trades.add_argument("symbol")
    trades.add_argument("--limit", type=int, default=20)

    watch = commands.add_parser("watch", help="stream WebSocket channels")
    watch.add_argument("channels", nargs="+", help="e.g. trades:BTC-USDT book:BTC-USDT fills")
    watch.add_argument("--count", type=int, default=0, help="stop after N messages")
    watch.add_argument("--seconds", type=float, default=0, help="stop after N seconds")
    return parser


def _client(settings: ConnectionSettings) -> Client:
    credentials = settings.credentials
    return Client(
        settings.endpoint,
        api_key=None if credentials is None else credentials.key_id,
        api_secret=None if credentials is None else credentials.secret,
        catalog=settings.catalog(),
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    client_factory: ClientFactory = _client,
) -> int:
    output = sys.stdout if out is None else out
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = resolve_settings(
            endpoint=arguments.endpoint,
            http_url=arguments.http_url,
            api_key=arguments.api_key,
            api_secret=arguments.api_secret,
            keys_file=arguments.keys_file,
            key_name=arguments.key_name,
            markets_file=arguments.markets_file,
        )
    except (ValueError, OSError) as error:
        parser.error(str(error))
    printer = Printer(output, as_json=arguments.json)
    try:
        if arguments.command == "watch":
            asyncio.run(_watch(settings, arguments, printer, client_factory))
            return 0
        with client_factory(settings) as client:
            _run(arguments, client, printer)
    except ExchangeError as error:
        printer.error(error)
        return 1
    return 0


def _run(arguments: argparse.Namespace, client: Client, printer: Printer) -> None:
    command = arguments.command
    if command == "place":
        result = client.place_order(
            arguments.symbol,
            arguments.side,
            arguments.quantity,
            price=arguments.price,
            time_in_force=arguments.tif,
            post_only=arguments.post_only,
            client_order_id=arguments.client_order_id,
        )
        printer.orders([result.order])
        for fill in result.fills:
            printer.line(
                fill,
                f"  filled {number(fill.quantity)} @ {number(fill.price)} fee {number(fill.fee)}",
            )
    elif command == "cancel":
        if arguments.all:
            printer.orders(client.cancel_all_orders(arguments.symbol))
        else:
            printer.orders(
                [client.cancel_order(arguments.order_id, client_order_id=arguments.client_order_id)]
            )
    elif command == "orders":
        page = client.list_orders(
            arguments.symbol, open_only=arguments.open, page_size=arguments.limit
        )
        printer.orders(page.items)
    elif command == "balances":
        printer.balances(client.get_balances().balances)
    elif command == "book":
        printer.book(client.get_order_book(arguments.symbol, depth=arguments.depth))
    elif command == "trades":
        printer.trades(client.list_trades(arguments.symbol, page_size=arguments.limit).items)


async def _watch(
    settings: ConnectionSettings,
    arguments: argparse.Namespace,
    printer: Printer,
    client_factory: ClientFactory,
) -> None:
    channels: list[str] = arguments.channels
    private = any(channel in PRIVATE_CHANNELS for channel in channels)
    with client_factory(settings) as client:  # the specs and scales that make amounts readable
        for channel in channels:
            parts = channel.split(":")
            if len(parts) > 1:
                client.get_market(parts[1])
        if private:  # fills of any market, balances of any asset
            client.list_markets()
            client.list_assets()
        catalog = client.catalog
    async with MarketDataSocket(settings.websocket_url, credentials=settings.credentials) as socket:
        if private:
            await socket.authenticate()
        await socket.subscribe(*channels)
        sys.stderr.write(f"watching {' '.join(channels)}\n")
        sys.stderr.flush()
        seen = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + arguments.seconds if arguments.seconds else None
        messages = socket.messages()
        while arguments.count == 0 or seen < arguments.count:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                message = await asyncio.wait_for(anext(messages), remaining)
            except TimeoutError:
                break
            if message.WhichOneof("message") == "heartbeat":
                continue
            seen += 1
            printer.event(to_event(message, catalog))


def number(value: Decimal | None) -> str:
    """A Decimal in positional notation (``0.00000001``, never ``1E-8``)."""
    return "-" if value is None else format(value, "f")


def _plain(value: Any) -> Any:
    """JSON-ready: Decimal and datetime as strings, enums by lower-case name."""
    if isinstance(value, Decimal):
        return number(value)
    if isinstance(value, datetime | Enum):
        return value.name.lower() if isinstance(value, Enum) else value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, ExchangeError):
        return {"reason": value.reason, "message": value.message}
    if is_dataclass(value) and not isinstance(value, type):
        return {
            entry.name: _plain(getattr(value, entry.name))
            for entry in fields(value)
            if entry.name not in {"raw", "message"}
        }
    return value


class Printer:
    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json

    def line(self, value: Any, text: str) -> None:
        if self.as_json:
            self.out.write(json.dumps(_plain(value), sort_keys=True) + "\n")
        else:
            self.out.write(text + "\n")

    def error(self, error: ExchangeError) -> None:
        if self.as_json:
            self.out.write(json.dumps({"error": _plain(error)}) + "\n")
        else:
            sys.stderr.write(f"error: {error.reason}: {error.message}\n")

    def orders(self, orders: Sequence[Order]) -> None:
        for order in orders:
            price = "market" if order.price is None else number(order.price)
            self.line(
                order,
                f"{order.order_id:>10}  {order.symbol:<9} {order.side.label:<4} "
                f"{number(order.quantity)} @ {price}  {order.status.label}"
                f"  filled {number(order.filled_quantity)}  ({order.client_order_id})",
            )

    def balances(self, balances: Sequence[Balance]) -> None:
        for balance in balances:
            self.line(
                balance,
                f"{balance.asset:<6} available {number(balance.available)}"
                f"  held {number(balance.held)}",
            )

    def book(self, book: OrderBook) -> None:
        if self.as_json:
            self.line(book, "")
            return
        self.out.write(f"{book.symbol} at seq {book.seq}\n")
        for level in reversed(book.asks):
            self.out.write(f"  ask {number(level.price):>14} {number(level.quantity)}\n")
        self.out.write("  ----\n")
        for level in book.bids:
            self.out.write(f"  bid {number(level.price):>14} {number(level.quantity)}\n")

    def trades(self, trades: Sequence[PublicTrade]) -> None:
        for trade in trades:
            self.line(
                trade,
                f"{trade.symbol} {trade.taker_side.label:<4} {number(trade.quantity)}"
                f" @ {number(trade.price)}"
                f"  #{trade.seq}",
            )

    def event(self, event: Any) -> None:
        if isinstance(event, RawEvent):
            document = json_format.MessageToDict(event.message)
            if self.as_json:
                self.out.write(json.dumps(document, sort_keys=True) + "\n")
            else:
                self.out.write(f"{event.channel or '-'} {event.kind}: {json.dumps(document)}\n")
            return
        self.line(event, f"{event.channel} {_plain(event)}")


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
