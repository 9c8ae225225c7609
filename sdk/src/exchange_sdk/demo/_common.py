"""What both demo bots share: the command line and the connected client."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from decimal import Decimal

from exchange_sdk.client import Client
from exchange_sdk.config import resolve_settings
from exchange_sdk.errors import ExchangeError
from exchange_sdk.models import MarketSpec

DEFAULT_SYMBOLS = ("BTC-USDT", "ETH-USDT")


def parser(description: str, *, key_name: str, rate: float) -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(description=description)
    command.add_argument("--endpoint")
    command.add_argument("--keys-file")
    command.add_argument("--key-name", default=key_name)
    command.add_argument("--api-key")
    command.add_argument("--api-secret")
    command.add_argument("--markets-file")
    command.add_argument("--symbols", nargs="+", default=list(DEFAULT_SYMBOLS))
    command.add_argument("--duration", type=float, default=60.0, help="seconds (0: forever)")
    command.add_argument("--rate", type=float, default=rate, help="rounds per second")
    command.add_argument("--seed", type=int, default=None)
    return command


def connect(arguments: argparse.Namespace) -> Client:
    settings = resolve_settings(
        endpoint=arguments.endpoint,
        api_key=arguments.api_key,
        api_secret=arguments.api_secret,
        keys_file=arguments.keys_file,
        key_name=arguments.key_name,
        markets_file=arguments.markets_file,
    )
    if settings.credentials is None:
        raise SystemExit("no API key: pass --api-key/--api-secret or start the local exchange")
    return Client(
        settings.endpoint,
        api_key=settings.credentials.key_id,
        api_secret=settings.credentials.secret,
        catalog=settings.catalog(),
    )


def reference_price(client: Client, market: MarketSpec) -> Decimal:
    """The last trade price when the ticker is served, else the market's reference."""
    try:
        last = client.get_ticker(market.symbol).last
    except ExchangeError:
        return market.reference_price
    return last if last > 0 else market.reference_price


def on_tick(price: Decimal, tick: Decimal) -> Decimal:
    """`price` rounded down to the tick grid (a deliberate choice by the bot, not the SDK)."""
    return (price // tick) * tick


def markets(client: Client, symbols: Sequence[str]) -> list[MarketSpec]:
    return [client.get_market(symbol) for symbol in symbols]
