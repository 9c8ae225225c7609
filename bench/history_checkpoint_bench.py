"""Event-loop stall of the order history's checkpoint (core/service/history_sink.py): the
whole history copied in the snapshot's step (before) vs the changes since the previous
snapshot copied there and applied to the writer's own copy in a thread (after).

Usage: .venv/bin/python bench/history_checkpoint_bench.py [--accounts 10] [--rounds 50000]
           [--changed-rounds 500 ...] [--repeats 5]

A `HistorySink` (the production one, bounds 10,000 orders and 10,000 fills per account) is
fed by a real engine: each round, one account rests a 1-lot sell and the next account
crosses it with a 1-lot IOC buy, so every account gets orders and fills; 50,000 rounds over
10 accounts fill every window (200,000 records: 100,000 orders + 100,000 fills). Then, per
repeat and per `--changed-rounds` value, that many more rounds are applied and one
checkpoint is taken each way, alternating, at the same history size:
(before) the checkpoint `HistorySink.wait_durable` took until now (commit 06004b3), kept in
         this file: the whole history copied on the loop (`OrderHistory.capture()`, the
         same function), then encoded as one pickle and written (fsync) in
         `asyncio.to_thread`;
(after)  `HistorySink.wait_durable` as it is: `take_changes()` on the loop, then in a thread
         the writer's state brought forward, encoded in chunks of 512 rows and written.
Both files are checked to hold the same history (the before file is written elsewhere).
bench/snapshot_bench.py's ticker wakes every 0.5 ms and records the longest gap between
wake-ups (what a submit waits). Printed, medians over the repeats (ms): the longest
stall, the on-loop step alone and the thread's time (wall time of the worker function, in
which it holds the GIL part of the time). The collector is tuned as in
bench/snapshot_bench.py (gc.freeze() after setup). On a shared machine the stalls include
preemption: run it several times. Only the printed times are floats; amounts are integers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import pickle
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.snapshot_bench import GC_THRESHOLDS, longest_stall_ms
from core.engine import Engine, PlaceOrder, Side, TimeInForce
from core.engine.testing import BTC, USDT, EngineDriver, limit_order
from core.sequencer import EventSinkStart
from core.service.history_sink import (
    _HEADER,
    CHECKPOINT_MAGIC_UNCHUNKED,
    HistorySink,
    _fill_fields,
    _write_and_prune,
    decode_checkpoint,
)
from core.service.order_history import HistoryCapture

ACCOUNTS_DEFAULT = 10
ROUNDS_DEFAULT = 50_000
CHANGED_ROUNDS_DEFAULT = (500, 5_000)
REPEATS_DEFAULT = 5
LOT = BTC // 10_000
MID_PRICE = 50_000 * USDT


class Feed:
    """Rounds of a resting sell and a crossing IOC buy, applied and handed to the sink."""

    def __init__(self, accounts: int, sink: HistorySink, driver: EngineDriver) -> None:
        self.accounts = [f"account-{index:03d}" for index in range(accounts)]
        self.sink = sink
        self.driver = driver
        self.round = 0

    def rounds(self, count: int) -> None:
        for _ in range(count):
            maker = self.accounts[self.round % len(self.accounts)]
            taker = self.accounts[(self.round + 1) % len(self.accounts)]
            self.round += 1
            commands: list[PlaceOrder] = [
                limit_order(maker, Side.SELL, LOT, MID_PRICE, client_order_id=f"s{self.round}"),
                limit_order(
                    taker,
                    Side.BUY,
                    LOT,
                    MID_PRICE,
                    time_in_force=TimeInForce.IOC,
                    client_order_id=f"b{self.round}",
                ),
            ]
            first_seq = self.driver.engine_seq_last + 1
            results = [self.driver.apply(command) for command in commands]
            self.sink.applied(first_seq, commands, results)


def encode_checkpoint_before(
    engine_seq: int, last_event_engine_seq: int, capture: HistoryCapture
) -> bytes:
    """The checkpoint encoder until now (commit 06004b3): one pickle of the three mappings."""
    payload = pickle.dumps(
        (
            capture.orders,
            capture.client_order_ids,
            {
                account_id: [_fill_fields(fill) for fill in fills]
                for account_id, fills in capture.fills.items()
            },
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    crc = zlib.crc32(payload)
    return (
        _HEADER.pack(CHECKPOINT_MAGIC_UNCHUNKED, engine_seq, last_event_engine_seq, crc) + payload
    )


async def before_checkpoint(
    sink: HistorySink, directory: Path, figures: dict[str, list[float]]
) -> None:
    """The checkpoint as HistorySink.wait_durable took it until now (commit 06004b3)."""
    started = time.perf_counter_ns()
    capture = sink.history.capture()
    figures["before_step"].append((time.perf_counter_ns() - started) / 1e6)
    engine_seq = sink.applied_seq
    last_event_engine_seq = sink.last_event_engine_seq

    def write() -> None:
        thread_started = time.perf_counter_ns()
        data = encode_checkpoint_before(engine_seq, last_event_engine_seq, capture)
        _write_and_prune(directory, engine_seq, data)
        figures["before_thread"].append((time.perf_counter_ns() - thread_started) / 1e6)

    await asyncio.to_thread(write)


async def after_checkpoint(sink: HistorySink, figures: dict[str, list[float]]) -> None:
    take_changes = sink.history.take_changes
    write_checkpoint = sink._write_checkpoint

    def timed_take_changes() -> Any:
        started = time.perf_counter_ns()
        changes = take_changes()
        figures["after_step"].append((time.perf_counter_ns() - started) / 1e6)
        return changes

    def timed_write(*arguments: Any) -> bool:
        started = time.perf_counter_ns()
        written = write_checkpoint(*arguments)
        figures["after_thread"].append((time.perf_counter_ns() - started) / 1e6)
        return written

    sink.history.take_changes = timed_take_changes  # type: ignore[method-assign]
    sink._write_checkpoint = timed_write  # type: ignore[method-assign,assignment]
    try:
        await sink.wait_durable(sink.applied_seq)
    finally:
        del sink.history.take_changes
        del sink._write_checkpoint


def comparable(capture: HistoryCapture) -> tuple[Any, ...]:
    fills = {account: list(map(_fill_fields, rows)) for account, rows in capture.fills.items()}
    return capture.orders, capture.client_order_ids, fills


async def measure(
    feed: Feed, directory: Path, before_directory: Path, changed_rounds: int, repeats: int
) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {
        name: []
        for name in (
            "before_stall",
            "before_step",
            "before_thread",
            "after_stall",
            "after_step",
            "after_thread",
        )
    }
    sink = feed.sink
    for _ in range(repeats):
        feed.rounds(changed_rounds)
        engine_seq = sink.applied_seq
        stall, _ = await longest_stall_ms(
            lambda: before_checkpoint(sink, before_directory, figures)
        )
        figures["before_stall"].append(stall)
        stall, _ = await longest_stall_ms(lambda: after_checkpoint(sink, figures))
        figures["after_stall"].append(stall)
        name = f"history-{engine_seq:020d}.bin"
        _, before = decode_checkpoint((before_directory / name).read_bytes(), engine_seq)
        _, after = decode_checkpoint((directory / name).read_bytes(), engine_seq)
        if comparable(before) != comparable(after):
            msg = f"the checkpoints at seq {engine_seq} differ"
            raise SystemExit(msg)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=ACCOUNTS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument(
        "--changed-rounds", type=int, nargs="+", default=list(CHANGED_ROUNDS_DEFAULT)
    )
    parser.add_argument("--repeats", type=int, default=REPEATS_DEFAULT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp) / "shard"
        before_directory = Path(temp) / "before"
        directory.mkdir()
        before_directory.mkdir()
        driver = EngineDriver()
        driver.bootstrap_btc_usdt()
        sink = HistorySink()
        feed = Feed(args.accounts, sink, driver)
        for account_id in feed.accounts:
            driver.fund(account_id, "BTC", 1_000 * BTC)
            driver.fund(account_id, "USDT", 100_000_000 * USDT)
        engine: Engine = driver.engine
        # Nothing to restore (snapshot seq 0); the funding commands carry no order history.
        sink.start(
            EventSinkStart(
                directory=directory,
                epoch=1,
                snapshot_seq=0,
                wal_last_seq=driver.engine_seq_last,
                engine=engine,
            )
        )
        feed.rounds(args.rounds)
        capture = sink.history.capture()
        orders = sum(map(len, capture.orders.values()))
        fills = sum(map(len, capture.fills.values()))
        del capture
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        print(
            f"python={sys.version.split()[0]} accounts={args.accounts} orders={orders:,} "
            f"fills={fills:,} repeats={args.repeats} (medians, ms)"
        )
        print(
            f"{'changed orders':>14} | {'before: stall':>13} {'step':>6} {'thread':>7} | "
            f"{'after: stall':>12} {'step':>6} {'thread':>7}"
        )
        for changed_rounds in args.changed_rounds:
            # The first after-checkpoint carries the changes since start: warm up once.
            asyncio.run(after_checkpoint(sink, {"after_step": [], "after_thread": []}))
            figures = asyncio.run(
                measure(feed, directory, before_directory, changed_rounds, args.repeats)
            )
            median = {name: statistics.median(values) for name, values in figures.items()}
            print(
                f"{2 * changed_rounds:>14,} | {median['before_stall']:>13.1f} "
                f"{median['before_step']:>6.1f} {median['before_thread']:>7.1f} | "
                f"{median['after_stall']:>12.1f} {median['after_step']:>6.1f} "
                f"{median['after_thread']:>7.1f}"
            )


if __name__ == "__main__":
    main()
