"""Event-loop stall of a snapshot: serializing on the loop vs capture on the loop + serialize
in a worker thread.

Usage: .venv/bin/python bench/snapshot_bench.py [--accounts N ...] [--repeats R]

For each N: an engine with N accounts, each funded by a Deposit (transfer id) and holding one
open limit order (client order id) near the mid, so every part of the state grows with N.
A ticker task wakes every 0.5 ms and records the longest gap between its wake-ups (the loop
stall a submit would see) while a snapshot is taken:
(before) `engine.snapshot()` on the loop, as Sequencer.snapshot() did until now;
(after)  `engine.capture_snapshot()` on the loop, `.serialize()` in `asyncio.to_thread`, as
         Sequencer.snapshot() does now. Both produce the same bytes (checked).
Printed: the medians over the repeats of the longest stall, of the on-loop step alone, and of
the worker's serialize time. The collector is tuned as in bench/engine_bench.py (gc.freeze()
after setup, thresholds 1000/5/1,000,000), so no full collection of the big heap lands in the
measurement. On a shared machine the stalls include preemption: run it several times.
Only the printed times are floats; amounts are integers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.engine import Deposit, Engine, PlaceOrder, Side
from core.engine.testing import BTC, USDT, EngineDriver

T = TypeVar("T")
ACCOUNTS_DEFAULT = (1_000, 6_000, 20_000)
REPEATS_DEFAULT = 5
TICK_S = 0.000_5
GC_THRESHOLDS = (1_000, 5, 1_000_000)  # as bench/engine_bench.py
TICK = USDT // 100
LOT = BTC // 10_000
MID_PRICE = 50_000 * USDT


def build_engine(accounts: int) -> Engine:
    driver = EngineDriver()
    driver.bootstrap_btc_usdt()
    for index in range(accounts):
        account_id = f"account-{index:06d}"
        is_buy = index % 2 == 0
        asset = "USDT" if is_buy else "BTC"
        amount = 1_000_000 * USDT if is_buy else 10 * BTC
        driver.apply(
            Deposit(account_id=account_id, asset=asset, amount=amount, transfer_id=f"d-{index}")
        )
        offset = (1 + index % 200) * TICK
        driver.apply(
            PlaceOrder(
                account_id=account_id,
                symbol="BTC-USDT",
                side=Side.BUY if is_buy else Side.SELL,
                quantity=(1 + index % 20) * LOT,
                price=MID_PRICE - offset if is_buy else MID_PRICE + offset,
                client_order_id=f"o-{index}",
            )
        )
    return driver.engine


async def longest_stall_ms(take: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    """Run `take()` while a ticker measures the longest gap between its wake-ups (ms), and
    return that with what `take()` returned (also used by bench/history_checkpoint_bench.py)."""
    longest_ns = 0
    running = True

    async def ticker() -> None:
        nonlocal longest_ns
        last = time.perf_counter_ns()
        while running:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter_ns()
            longest_ns = max(longest_ns, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is in its steady state
    longest_ns = 0
    taken = await take()
    await asyncio.sleep(0.002)
    running = False
    await task
    return longest_ns / 1e6, taken


async def measure(engine: Engine, repeats: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {
        "before_stall": [],
        "before_step": [],
        "after_stall": [],
        "after_step": [],
        "after_serialize": [],
    }

    async def before() -> bytes:
        started = time.perf_counter_ns()
        state_bytes = engine.snapshot()
        figures["before_step"].append((time.perf_counter_ns() - started) / 1e6)
        return state_bytes

    async def after() -> bytes:
        started = time.perf_counter_ns()
        captured = engine.capture_snapshot()
        figures["after_step"].append((time.perf_counter_ns() - started) / 1e6)

        def serialize() -> bytes:
            serialize_started = time.perf_counter_ns()
            state_bytes = captured.serialize()
            figures["after_serialize"].append((time.perf_counter_ns() - serialize_started) / 1e6)
            return state_bytes

        return await asyncio.to_thread(serialize)

    for _ in range(repeats):
        stall, before_bytes = await longest_stall_ms(before)
        figures["before_stall"].append(stall)
        stall, after_bytes = await longest_stall_ms(after)
        figures["after_stall"].append(stall)
        if after_bytes != before_bytes:
            msg = "capture + serialize differs from snapshot()"
            raise SystemExit(msg)
        del before_bytes, after_bytes
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=list(ACCOUNTS_DEFAULT))
    parser.add_argument("--repeats", type=int, default=REPEATS_DEFAULT)
    args = parser.parse_args()
    print(
        f"python={sys.version.split()[0]} repeats={args.repeats} "
        f"switch interval={sys.getswitchinterval() * 1e3:.0f}ms (medians, ms)"
    )
    print(
        f"{'accounts':>8} {'MB':>5} | {'before: stall':>13} | "
        f"{'after: stall':>12} {'capture':>8} {'serialize (thread)':>18}"
    )
    for accounts in args.accounts:
        engine = build_engine(accounts)
        size_mb = len(engine.snapshot()) / 1e6
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        figures = asyncio.run(measure(engine, args.repeats))
        median = {name: statistics.median(values) for name, values in figures.items()}
        print(
            f"{accounts:>8} {size_mb:>5.1f} | {median['before_stall']:>13.1f} | "
            f"{median['after_stall']:>12.1f} {median['after_step']:>8.1f} "
            f"{median['after_serialize']:>18.1f}"
        )


if __name__ == "__main__":
    main()
