"""The soak: the local exchange in a temporary directory, driven through the SDK for
`--minutes` at `--rate` order placements a second (market makers, takers, random traders,
deposits and withdrawals: tests/support/trading_load.py), a line of figures a minute, then
drained and reconciled exactly (tests/support/soak.py says what each figure is).

    .venv/bin/python bench/soak.py --minutes 60 --rate 200

Exits 1 when an aim is not met: the rate, 0 broker errors, a ledger lag that never grows
for more than a minute, memory and open files flat after warm-up, exact reconciliation.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from tests.support.local_stack import running_local_stack
from tests.support.soak import (
    SOAK_HISTORY_WINDOW,
    SoakOptions,
    format_aims,
    run_soak,
    soak_stack_environment,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="order placements per second")
    parser.add_argument(
        "--warmup-minutes", type=float, default=None, help="default: 5 or a third of the run"
    )
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--history-window",
        type=int,
        default=SOAK_HISTORY_WINDOW,
        help="the core's per-account windows (its default: 10000; tests/support/soak.py)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the stack's directory (data and logs)"
    )
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    warmup = arguments.warmup_minutes
    if warmup is None:
        warmup = min(5.0, arguments.minutes / 3)
    options = SoakOptions(
        minutes=arguments.minutes,
        orders_per_second=arguments.rate,
        warmup_minutes=warmup,
        sample_seconds=arguments.sample_seconds,
        seed=seed,
    )
    print(
        f"soak: {arguments.minutes} min at {arguments.rate}/s, warm-up {warmup} min, "
        f"seed {seed}, core window {arguments.history_window} per account"
    )
    started = time.monotonic()
    environment = soak_stack_environment(arguments.history_window)
    with running_local_stack(keep=arguments.keep, environment=environment) as stack:
        print(f"stack up in {time.monotonic() - started:.1f}s at {stack.var}")
        report = asyncio.run(run_soak(stack, options))
    print(format_aims(report))
    sys.exit(0 if report.met else 1)


if __name__ == "__main__":
    main()
