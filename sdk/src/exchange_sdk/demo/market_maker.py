"""A demo market maker: every round, one StreamOrders batch per market that cancels its
quotes and places ``--levels`` bids and asks around the reference price (spread and step
in basis points). Stops after ``--duration`` seconds and cancels everything it left.
``--duration 0`` runs until stopped (Ctrl-C or SIGTERM, which also cancel its quotes) and
rides out an exchange that is unavailable for a while (the local exchange runs it so).

    python -m exchange_sdk.demo.market_maker --duration 60 --rate 2
"""

from __future__ import annotations

import random
import signal
import sys
import time
from collections.abc import Sequence
from decimal import Decimal

from exchange_sdk.client import Client, OrderStream
from exchange_sdk.demo._common import connect, markets, on_tick, parser, reference_price
from exchange_sdk.errors import UnavailableError
from exchange_sdk.models import CancelAllOrders, MarketSpec, OrderCommand, PlaceOrder, Side

BPS = Decimal("0.0001")
UNAVAILABLE_PAUSE_SECONDS = 2.0  # forever mode: the pause before quoting again


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
    """Quotes until the duration is over (0: forever); returns the number of batches sent.
    Forever, a round the exchange could not take (unavailable even after the SDK's retries)
    is reported and the next round comes after a pause; with a duration it ends the run."""
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
                    try:
                        result = stream.send(batch)
                    except UnavailableError as unavailable:
                        if deadline is not None:
                            raise
                        print(
                            f"{market.symbol}: {unavailable.reason}: {unavailable.message}",
                            file=sys.stderr,
                        )
                        time.sleep(UNAVAILABLE_PAUSE_SECONDS)
                        continue
                    batches += 1
                    for error in result.errors:
                        print(f"{market.symbol}: {error.reason}: {error.message}", file=sys.stderr)
                time.sleep(1 / rate if rate > 0 else 0)
        finally:
            _cancel_everything(stream, specs)
    return batches


def _cancel_everything(stream: OrderStream, specs: Sequence[MarketSpec]) -> None:
    stream.send([CancelAllOrders(market.symbol) for market in specs])


def _stop_on_sigterm(_signal_number: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through run()'s `finally`, which cancels the quotes


def main(argv: Sequence[str] | None = None) -> int:
    command = parser("Demo market maker (StreamOrders).", key_name="demo-maker", rate=2.0)
    command.add_argument("--levels", type=int, default=3)
    command.add_argument("--spread-bps", type=int, default=10)
    arguments = command.parse_args(argv)
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)  # noqa: S311
    print(f"market maker: seed {seed}, symbols {' '.join(arguments.symbols)}", flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a stop by `kill` cancels the quotes too
    try:
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
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, after run() cancelled the quotes
        print("market maker: stopped, quotes cancelled", flush=True)
        return 0
    print(f"market maker: {batches} batches sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
