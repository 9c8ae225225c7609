"""A demo market maker: every round, one StreamOrders batch per market that cancels its
quotes and places ``--levels`` bids and asks around the reference price (spread and step
in basis points). Stops after ``--duration`` seconds and cancels everything it left.

    python -m exchange_sdk.demo.market_maker --duration 60 --rate 2
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from decimal import Decimal

from exchange_sdk.client import Client, OrderStream
from exchange_sdk.demo._common import connect, markets, on_tick, parser, reference_price
from exchange_sdk.models import CancelAllOrders, MarketSpec, OrderCommand, PlaceOrder, Side

BPS = Decimal("0.0001")


def quote_batch(
    market: MarketSpec,
    reference: Decimal,
    *,
    levels: int,
    spread_bps: int,
    step_bps: int,
    lots: int,
) -> list[OrderCommand]:
    """Cancel-all, then `levels` post-only quotes per side, inside the price band."""
    commands: list[OrderCommand] = [CancelAllOrders(market.symbol)]
    quantity = market.lot_step * lots
    quantity = max(quantity, market.min_quantity)
    for level in range(levels):
        distance = reference * BPS * (spread_bps + step_bps * level)
        bid = on_tick(reference - distance, market.price_tick)
        ask = on_tick(reference + distance, market.price_tick) + market.price_tick
        commands.append(PlaceOrder(market.symbol, Side.BUY, quantity, price=bid, post_only=True))
        commands.append(PlaceOrder(market.symbol, Side.SELL, quantity, price=ask, post_only=True))
    return commands


def run(
    client: Client,
    symbols: Sequence[str],
    *,
    duration_seconds: float,
    rate: float,
    levels: int = 3,
    spread_bps: int = 10,
    step_bps: int = 10,
    lots: int = 10,
    seed: int = 0,
) -> int:
    """Quotes until the duration is over; returns the number of batches sent."""
    random_source = random.Random(seed)  # noqa: S311 - simulation, not cryptography
    specs = markets(client, symbols)
    batches = 0
    deadline = time.monotonic() + duration_seconds if duration_seconds else None
    with client.stream_orders() as stream:
        try:
            while deadline is None or time.monotonic() < deadline:
                for market in specs:
                    reference = reference_price(client, market)
                    batch = quote_batch(
                        market,
                        reference,
                        levels=levels,
                        spread_bps=spread_bps + random_source.randint(0, 3),
                        step_bps=step_bps,
                        lots=lots * random_source.randint(1, 3),
                    )
                    result = stream.send(batch)
                    batches += 1
                    for error in result.errors:
                        print(f"{market.symbol}: {error.reason}: {error.message}", file=sys.stderr)
                time.sleep(1 / rate if rate > 0 else 0)
        finally:
            _cancel_everything(stream, specs)
    return batches


def _cancel_everything(stream: OrderStream, specs: Sequence[MarketSpec]) -> None:
    stream.send([CancelAllOrders(market.symbol) for market in specs])


def main(argv: Sequence[str] | None = None) -> int:
    command = parser("Demo market maker (StreamOrders).", key_name="demo-alice", rate=2.0)
    command.add_argument("--levels", type=int, default=3)
    command.add_argument("--spread-bps", type=int, default=10)
    arguments = command.parse_args(argv)
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)  # noqa: S311
    print(f"market maker: seed {seed}, symbols {' '.join(arguments.symbols)}")
    with connect(arguments) as client:
        batches = run(
            client,
            arguments.symbols,
            duration_seconds=arguments.duration,
            rate=arguments.rate,
            levels=arguments.levels,
            spread_bps=arguments.spread_bps,
            seed=seed,
        )
    print(f"market maker: {batches} batches sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
