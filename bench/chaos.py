"""The long crash campaign: the local exchange in a temporary directory under SDK load, a
random component killed and restarted, or paused and resumed, each cycle; after every cycle
nothing acknowledged may be lost, the ledger must reconcile exactly with the core and every
WebSocket book must equal the core's (tests/support/chaos.py). Prints its seed, a line per
cycle and a table per component.

    .venv/bin/python bench/chaos.py --cycles 100 [--seed N] [--rate 20]

Exits 1 when a cycle failed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from tests.support.chaos import ChaosOptions, format_table, run_campaign
from tests.support.local_stack import running_local_stack


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="order placements per second")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    print(f"chaos: {arguments.cycles} cycles at {arguments.rate}/s, seed {seed}")
    options = ChaosOptions(cycles=arguments.cycles, seed=seed, orders_per_second=arguments.rate)
    started = time.monotonic()
    with running_local_stack(keep=arguments.keep) as stack:
        results = asyncio.run(run_campaign(stack, options))
    failed = sum(not result.passed for result in results)
    print(format_table(results))
    print(
        f"{len(results)} cycles in {(time.monotonic() - started) / 60:.1f} min, "
        f"{failed} failed (seed {seed})"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
