"""Memory of the trading core as commands accumulate (docs/adr/0019).

Two runs, each a fresh shard, trading as the soak's makers and takers do (per round: a maker's
limit sell, a taker's IOC buy that fills it, a resting buy the maker cancels; 3 orders):

1. `python -m core.service` in its own process: its RSS after 10k, 20k and 40k orders (what
   the soak watches), with the service's default windows or `--window N`.
2. The same service in this process (the client shares it, so its RSS is not shown): the entry
   count of every per-account structure and the order history's change tracking after the same
   order counts. Each must stop at accounts x window (or the live state), not grow with the
   orders.

    .venv/bin/python bench/core_memory.py [--accounts 4] [--window N] [--orders 10000 20000 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from grpc import aio

from core.service import CoreService
from core.service.testing import (
    ServerProcess,
    fund_load_accounts,
    in_process_core,
    rss_mib,
    trade_and_cancel,
)

ORDERS_PER_ROUND = 3


def _table_size(table: object) -> int:
    tables = getattr(table, "_by_account")  # noqa: B009  (a bench reads the engine's internals)
    return sum(len(entries) for entries in tables.values())


def structure_sizes(core: CoreService) -> dict[str, int]:
    runtime = core.runtime
    engine = runtime.sequencer.engine
    history = runtime.history
    sizes = {
        name: _table_size(getattr(engine, attribute))
        for name, attribute in (
            ("engine client order ids", "_order_requests"),
            ("engine closed orders", "_closed_orders"),
            ("engine request ids", "_command_requests"),
            ("engine transfer ids", "_transfer_requests"),
        )
    }
    sizes["engine open orders"] = len(getattr(engine, "_orders"))  # noqa: B009
    sizes["history orders"] = len(history.records_by_order_id)
    sizes["history fills"] = sum(len(fills) for fills in getattr(history, "_fills").values())  # noqa: B009
    sizes["history changes since snapshot"] = len(getattr(history, "_changed_orders"))  # noqa: B009
    return sizes


async def _drive(
    channel: aio.Channel,
    accounts: tuple[str, ...],
    order_counts: list[int],
    report: Callable[[int], None],
) -> None:
    await fund_load_accounts(channel, accounts)
    rounds_done = 0
    for orders in order_counts:
        rounds = orders // ORDERS_PER_ROUND
        await trade_and_cancel(channel, accounts, rounds_done, rounds - rounds_done)
        rounds_done = rounds
        report(orders)


async def run_process(
    accounts: tuple[str, ...], window: int | None, order_counts: list[int]
) -> None:
    arguments = ["--log-level", "WARNING"]
    if window is not None:
        arguments += ["--history-window-per-account", str(window)]
    with (
        tempfile.TemporaryDirectory() as directory,
        ServerProcess(Path(directory) / "core", *arguments) as server,
    ):
        print(f"core process RSS at start: {rss_mib(server.pid):.1f} MiB")
        async with aio.insecure_channel(server.address) as channel:
            await _drive(
                channel,
                accounts,
                order_counts,
                lambda orders: print(
                    f"  after {orders:>6,} orders: RSS {rss_mib(server.pid):6.1f} MiB", flush=True
                ),
            )


async def run_in_process(
    accounts: tuple[str, ...], window: int | None, order_counts: list[int]
) -> None:
    async with in_process_core(history_window_per_account=window) as (core, channel):

        def report(orders: int) -> None:
            sizes = ", ".join(f"{name} {size:,}" for name, size in structure_sizes(core).items())
            print(f"  after {orders:>6,} orders: {sizes}", flush=True)

        await _drive(channel, accounts, order_counts, report)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--window", type=int, default=None, help="--history-window-per-account")
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 20_000, 40_000])
    parser.add_argument("--no-structures", action="store_true", help="only the process run")
    args = parser.parse_args()
    accounts = tuple(f"memory-{index}" for index in range(args.accounts))
    window = "default" if args.window is None else f"{args.window:,}"
    print(f"{args.accounts} accounts, window per account: {window}")
    asyncio.run(run_process(accounts, args.window, args.orders))
    if not args.no_structures:
        print("structures (entries), same load in this process:")
        asyncio.run(run_in_process(accounts, args.window, args.orders))


if __name__ == "__main__":
    main()
