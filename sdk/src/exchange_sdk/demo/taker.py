"""A demo taker: random marketable IOC orders (a limit a little through the reference
price, so they trade against the market maker's quotes and never rest). ``--duration 0``
runs until stopped; an order the exchange refuses or cannot take is reported and the next
one follows, so it rides out an exchange that is unavailable for a while.

    python -m exchange_sdk.demo.taker --duration 60 --rate 1
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from decimal import Decimal

from exchange_sdk.client import Client
from exchange_sdk.demo._common import connect, markets, on_tick, parser, reference_price
from exchange_sdk.errors import ExchangeError
from exchange_sdk.models import Side, TimeInForce

THROUGH = Decimal("0.005")  # 0.5 % through the reference: marketable, inside the band


def run(
    client: Client,
    symbols: Sequence[str],
    *,
    duration_seconds: float,
    rate: float,
    seed: int = 0,
    orders_max: int = 0,
) -> tuple[int, int]:
    """Sends orders until the duration (0: forever) or `orders_max` is reached; (orders,
    fills)."""
    random_source = random.Random(seed)  # noqa: S311 - simulation, not cryptography
    specs = markets(client, symbols)
    orders = fills = 0
    deadline = time.monotonic() + duration_seconds if duration_seconds else None
    while deadline is None or time.monotonic() < deadline:
        market = random_source.choice(specs)
        side = random_source.choice((Side.BUY, Side.SELL))
        reference = reference_price(client, market)
        limit = reference * (1 + THROUGH if side is Side.BUY else 1 - THROUGH)
        quantity = max(market.min_quantity, market.lot_step * random_source.randint(1, 20))
        try:
            result = client.place_order(
                market.symbol,
                side,
                quantity,
                price=on_tick(limit, market.price_tick),
                time_in_force=TimeInForce.IOC,
            )
        except ExchangeError as error:
            print(f"{market.symbol}: {error.reason}: {error.message}", file=sys.stderr)
        else:
            fills += len(result.fills)
        orders += 1
        if orders_max and orders >= orders_max:
            break
        time.sleep(1 / rate if rate > 0 else 0)
    return orders, fills


def main(argv: Sequence[str] | None = None) -> int:
    command = parser("Demo taker (random marketable orders).", key_name="demo-taker", rate=1.0)
    arguments = command.parse_args(argv)
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)  # noqa: S311
    print(f"taker: seed {seed}, symbols {' '.join(arguments.symbols)}", flush=True)
    with connect(arguments) as client:
        orders, fills = run(
            client,
            arguments.symbols,
            duration_seconds=arguments.duration,
            rate=arguments.rate,
            seed=seed,
        )
    print(f"taker: {orders} orders, {fills} fills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
