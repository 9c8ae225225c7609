"""Benchmark of the matching + risk engine against a minimal reference book.

Usage: .venv/bin/python bench/engine_bench.py [--commands N] [--seed S]
       .venv/bin/python bench/engine_bench.py --baseline REV [--repeats N] [--instructions]

One seeded command stream (printed seed) with a realistic mix:
- 70% resting limit orders near the top of the book (never crossing),
- 20% cancels of live orders,
- 10% crossing IOC limit orders that take one to three resting orders.
The stream is generated once (its live-order bookkeeping uses the reference book), then
measured three ways in the same process:
(a) the full engine: validation, risk reservations, fees, STP checks, events, sequencing;
(b) a minimal price-time book (heapq + lazy deletion, no risk, no events) on the same stream;
(c) the full engine again with per-command latency and garbage-collector pauses recorded;
(d) the full engine on the same stream with every cancel keyed by a `request_id` (as the
    service logs them since ADR 0016: one table lookup and one insert per cancel, FIFO
    eviction once an account holds 10,000 keys), against (a): the cost of durable keys.
The collector is tuned like the service would tune it: gc.freeze() after setup (the command
stream and the funded engine become permanent) and raised thresholds.

`--baseline REV` compares an earlier engine with this tree's in the same run: core/engine at
git revision REV is extracted (`git archive`) into a temporary directory, and child processes
measure (a) and (b) alternately with that engine and with this tree's (each child imports
`core.engine` from its root, set by ENGINE_BENCH_ENGINE_ROOT), `--repeats` times each, in the
order A B B A A B ... so that a drift of the machine's load falls on both. It prints every
figure, the medians, the after/before ratio of (a), and fails if the two engines end in
different state hashes or trade counts. `--instructions` also counts the CPU instructions per
command of each engine under `valgrind --tool=cachegrind` (the stream's generation and setup,
run alone, subtracted), which the machine's load does not change.
Amounts are integers in minor units; the only floats are the printed rates and latencies.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# A directory holding core/engine to measure instead of this tree's (set by --baseline for its
# child processes; ENGINE_ROOT_ENV below).
sys.path.insert(0, os.environ.get("ENGINE_BENCH_ENGINE_ROOT", sys.path[0]))

from core.engine import (
    CancelOrder,
    Engine,
    EngineConfig,
    PlaceOrder,
    Side,
    TimeInForce,
)
from core.engine.commands import Command
from core.engine.testing import BTC, USDT, EngineDriver, btc_usdt_spec

REPOSITORY = Path(__file__).resolve().parents[1]
ENGINE_ROOT_ENV = "ENGINE_BENCH_ENGINE_ROOT"
SEED_DEFAULT = 20_251_121
COMMANDS_DEFAULT = 300_000
MAKERS = 50
TAKERS = 10
TICK = USDT // 100
LOT = BTC // 10_000
MID_PRICE = 50_000 * USDT
# Young collections of at most 1,000 new objects, a middle generation of at most 5 of them,
# and no automatic full collection: the engine's steady state creates no reference cycles
# (everything it drops is freed by reference counting), so scanning the whole old heap only
# costs pauses (a service runs gc.collect(); gc.freeze() at quiet points, e.g. snapshots).
# Every surviving object is scanned once young and once in the middle generation whatever the
# thresholds, so smaller ones cost little throughput; the longest pause is a middle-generation
# collection of ~5 x 1,000 survivors (resting orders): ~5 ms, where 2,000 / 5 took ~10 ms.
GC_THRESHOLDS = (1_000, 5, 1_000_000)


class ReferenceBook:
    """Minimal price-time book: heaps of (price key, arrival, id) and lazy deletion."""

    __slots__ = ("arrival", "asks", "bids", "orders")

    def __init__(self) -> None:
        self.bids: list[tuple[int, int, int]] = []  # (-price, arrival, order id)
        self.asks: list[tuple[int, int, int]] = []  # (price, arrival, order id)
        self.orders: dict[int, list[int]] = {}  # order id -> [remaining]
        self.arrival = 0

    def place(self, order_id: int, command: PlaceOrder) -> int:
        """Match, then rest a GTC remainder. Returns the number of fills."""
        orders = self.orders
        is_buy = command.side is Side.BUY
        price = command.price
        remaining = command.quantity
        heap = self.asks if is_buy else self.bids
        fills = 0
        while remaining and heap:
            key, _, maker_id = heap[0]
            maker = orders.get(maker_id)
            if maker is None:
                heapq.heappop(heap)
                continue
            if (key > price) if is_buy else (-key < price):
                break
            quantity = min(remaining, maker[0])
            maker[0] -= quantity
            remaining -= quantity
            fills += 1
            if not maker[0]:
                del orders[maker_id]
                heapq.heappop(heap)
        if remaining and command.time_in_force is TimeInForce.GTC:
            self.arrival += 1
            orders[order_id] = [remaining]
            if is_buy:
                heapq.heappush(self.bids, (-price, self.arrival, order_id))
            else:
                heapq.heappush(self.asks, (price, self.arrival, order_id))
        return fills

    def cancel(self, order_id: int) -> bool:
        return self.orders.pop(order_id, None) is not None

    def best(self, heap: list[tuple[int, int, int]]) -> int | None:
        while heap and heap[0][2] not in self.orders:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


@dataclass(frozen=True, slots=True)
class Stream:
    commands: list[Command]
    engine_seq_first: int
    fills_expected: int


def funded_engine(driver_for: Callable[[Engine], EngineDriver] = EngineDriver) -> EngineDriver:
    """The market and the funded makers and takers (`driver_for`: e.g. a driver that also
    records the events, bench/ledger_bench.py --mix core)."""
    driver = driver_for(Engine(EngineConfig(open_orders_max_per_account=1_000_000)))
    driver.bootstrap_btc_usdt(btc_usdt_spec())
    for index in range(MAKERS):
        driver.fund(f"maker-{index}", "BTC", 100_000 * BTC)
        driver.fund(f"maker-{index}", "USDT", 10**9 * USDT)
    for index in range(TAKERS):
        driver.fund(f"taker-{index}", "BTC", 100_000 * BTC)
        driver.fund(f"taker-{index}", "USDT", 10**9 * USDT)
    return driver


def generate(seed: int, count: int, engine_seq_first: int) -> Stream:
    rng = random.Random(seed)
    book = ReferenceBook()
    live: list[int] = []
    commands: list[Command] = []
    fills = 0
    for index in range(count):
        engine_seq = engine_seq_first + index
        draw = rng.random()
        command: Command
        if draw < 0.20 and live:
            while live:
                position = rng.randrange(len(live))
                live[position], live[-1] = live[-1], live[position]
                order_id = live.pop()
                if order_id in book.orders:
                    break
            command = CancelOrder(account_id=owner_of(order_id), order_id=order_id)
            book.cancel(order_id)
            commands.append(command)
            continue
        best_bid = book.best(book.bids)
        best_ask = book.best(book.asks)
        bid = -best_bid if best_bid is not None else MID_PRICE - TICK
        ask = best_ask if best_ask is not None else MID_PRICE + TICK
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        if draw < 0.90:
            offset = rng.randint(1, 100) * TICK
            price = ask - offset if side is Side.BUY else bid + offset
            account_id = f"maker-{rng.randrange(MAKERS)}"
            command = PlaceOrder(
                account_id=account_id,
                symbol="BTC-USDT",
                side=side,
                quantity=rng.randint(1, 20) * LOT,
                price=price,
            )
            live.append(engine_seq)
            _OWNERS[engine_seq] = account_id
        else:
            price = ask + 5 * TICK if side is Side.BUY else bid - 5 * TICK
            command = PlaceOrder(
                account_id=f"taker-{rng.randrange(TAKERS)}",
                symbol="BTC-USDT",
                side=side,
                quantity=rng.randint(10, 40) * LOT,
                price=price,
                time_in_force=TimeInForce.IOC,
            )
        fills += book.place(engine_seq, command)
        commands.append(command)
    return Stream(commands=commands, engine_seq_first=engine_seq_first, fills_expected=fills)


_OWNERS: dict[int, str] = {}


def owner_of(order_id: int) -> str:
    return _OWNERS[order_id]


class PauseRecorder:
    """gc.callbacks hook: the longest collection pause in wall time and in this thread's CPU
    time (on a shared machine the wall figure also counts time the thread was preempted)."""

    def __init__(self) -> None:
        self.started_ns = 0
        self.started_cpu_ns = 0
        self.longest_ns = 0
        self.longest_cpu_ns = 0
        self.collections = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started_ns = time.perf_counter_ns()
            self.started_cpu_ns = time.thread_time_ns()
            return
        pause_ns = time.perf_counter_ns() - self.started_ns
        pause_cpu_ns = time.thread_time_ns() - self.started_cpu_ns
        self.longest_ns = max(self.longest_ns, pause_ns)
        self.longest_cpu_ns = max(self.longest_cpu_ns, pause_cpu_ns)
        self.collections[info["generation"]] += 1


def run_engine(driver: EngineDriver, stream: Stream) -> float:
    apply = driver.engine.apply
    engine_seq = stream.engine_seq_first
    timestamp_ns = 1_800_000_000_000_000_000
    started = time.perf_counter_ns()
    for command in stream.commands:
        apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)
        engine_seq += 1
        timestamp_ns += 1_000
    elapsed_ns = time.perf_counter_ns() - started
    return len(stream.commands) / (elapsed_ns / 1e9)


def run_reference(stream: Stream) -> float:
    book = ReferenceBook()
    place = book.place
    cancel = book.cancel
    engine_seq = stream.engine_seq_first
    started = time.perf_counter_ns()
    for command in stream.commands:
        if type(command) is PlaceOrder:
            place(engine_seq, command)
        else:
            cancel(command.order_id)  # type: ignore[union-attr]
        engine_seq += 1
    elapsed_ns = time.perf_counter_ns() - started
    return len(stream.commands) / (elapsed_ns / 1e9)


def run_latency(driver: EngineDriver, stream: Stream) -> list[int]:
    apply = driver.engine.apply
    clock = time.perf_counter_ns
    engine_seq = stream.engine_seq_first
    timestamp_ns = 1_800_000_000_000_000_000
    latencies = [0] * len(stream.commands)
    for index, command in enumerate(stream.commands):
        started = clock()
        apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)
        latencies[index] = clock() - started
        engine_seq += 1
        timestamp_ns += 1_000
    return latencies


def percentile(sorted_values: list[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


# ---------------------------------------------------------------- --baseline: before and after


def child_run(mode: str, seed: int, count: int, thresholds: tuple[int, ...]) -> None:
    """One measurement in a child process, with the `core.engine` its path gives it.

    timed: (a) and (b) as in the main run, then one JSON line on stdout;
    engine: the setup, the stream and the engine's run, untimed (counted by cachegrind);
    generate: the setup and the stream only (what `engine` minus this leaves is the engine's).
    """
    import core.engine  # noqa: PLC0415  (the engine this child measures, reported below)

    driver = funded_engine()
    stream = generate(seed, count, driver.engine_seq_last + 1)
    if mode == "generate":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    engine_rate = run_engine(driver, stream)
    if mode == "engine":
        return
    reference_rate = run_reference(stream)
    figures = {
        "engine_package": str(Path(core.engine.__file__).resolve().parent),
        "engine": engine_rate,
        "reference": reference_rate,
        "trades": driver.engine.trade_id_last,
        "state_hash": driver.engine.state_hash(),
    }
    print(json.dumps(figures))


def extract_engine(revision: str, directory: Path) -> Path:
    """core/engine (and core/__init__.py) at `revision`, under `directory`; returns its root."""
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(REPOSITORY),
            "archive",
            "--format=tar",
            revision,
            "core/__init__.py",
            "core/engine",
        ],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def child_command(mode: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-run",
        mode,
        "--commands",
        str(args.commands),
        "--seed",
        str(args.seed),
        "--gc-thresholds",
        *(str(value) for value in args.gc_thresholds),
    ]


def child_environment(engine_root: Path) -> dict[str, str]:
    return {**os.environ, ENGINE_ROOT_ENV: str(engine_root), "PYTHONHASHSEED": "0"}


def timed_child(engine_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    completed = subprocess.run(
        child_command("timed", args),
        env=child_environment(engine_root),
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    expected = (engine_root / "core" / "engine").resolve()
    if Path(figures["engine_package"]) != expected:
        msg = f"the child measured {figures['engine_package']}, not {expected}"
        raise SystemExit(msg)
    return figures


def instructions(engine_root: Path, mode: str, args: argparse.Namespace) -> int:
    """CPU instructions of one child run under cachegrind (no cache simulation)."""
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            *child_command(mode, args),
        ],
        env=child_environment(engine_root),
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", completed.stderr)
    if match is None:
        msg = f"no instruction count in valgrind's output: {completed.stderr[-500:]}"
        raise SystemExit(msg)
    return int(match.group(1).replace(",", ""))


def compare_with_baseline(args: argparse.Namespace) -> None:
    print(
        f"seed={args.seed} commands={args.commands} python={sys.version.split()[0]} "
        f"baseline={args.baseline} repeats={args.repeats}"
    )
    with tempfile.TemporaryDirectory(prefix="engine-bench-baseline-") as temporary:
        roots = {"before": extract_engine(args.baseline, Path(temporary)), "after": REPOSITORY}
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for index in range(args.repeats):
            order = ("before", "after") if index % 2 == 0 else ("after", "before")
            for name in order:
                figures = timed_child(roots[name], args)
                runs[name].append(figures)
                print(
                    f"  run {index + 1} {name:6}: (a) engine {figures['engine']:10,.0f} "
                    f"commands/s  (b) reference {figures['reference']:10,.0f} commands/s  "
                    f"(a)/(b) {figures['engine'] / figures['reference']:.3f}"
                )
        for name in ("trades", "state_hash"):
            values = {figures[name] for figures in runs["before"] + runs["after"]}
            if len(values) != 1:
                msg = f"the engines disagree on {name}: {sorted(map(str, values))}"
                raise SystemExit(msg)
        medians = {
            name: {
                figure: statistics.median(figures[figure] for figures in runs[name])
                for figure in ("engine", "reference")
            }
            for name in runs
        }
        pair_ratios = [
            after["engine"] / before["engine"]
            for before, after in zip(runs["before"], runs["after"], strict=True)
        ]
        for name in ("before", "after"):
            engine_rate = medians[name]["engine"]
            reference_rate = medians[name]["reference"]
            print(
                f"{name:6} (median): (a) engine {engine_rate:10,.0f} commands/s  "
                f"(b) reference {reference_rate:10,.0f} commands/s  "
                f"(a)/(b) {engine_rate / reference_rate:.3f}"
            )
        engine_ratio = medians["after"]["engine"] / medians["before"]["engine"]
        print(
            f"after/before, (a) medians: {engine_ratio:.3f}"
            f"  (per pair: median {statistics.median(pair_ratios):.3f}, "
            f"range {min(pair_ratios):.3f}-{max(pair_ratios):.3f})"
        )
        print(f"same trades ({runs['after'][0]['trades']}) and state hash in every run")
        if args.instructions:
            per_command = {}
            for name in ("before", "after"):
                engine_count = instructions(roots[name], "engine", args)
                setup_count = instructions(roots[name], "generate", args)
                per_command[name] = (engine_count - setup_count) / args.commands
                print(f"{name:6}: {per_command[name]:,.0f} CPU instructions per command")
            print(
                f"after/before, instructions per command: "
                f"{per_command['after'] / per_command['before']:.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=COMMANDS_DEFAULT)
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT)
    parser.add_argument(
        "--gc-thresholds", type=int, nargs=3, default=GC_THRESHOLDS, metavar=("G0", "G1", "G2")
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="compare the engine at this git revision with this tree's, in the same run",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each engine (--baseline)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="with --baseline: also count CPU instructions per command (valgrind)",
    )
    parser.add_argument(
        "--child-run", choices=("timed", "engine", "generate"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    thresholds = tuple(args.gc_thresholds)
    if args.child_run:
        child_run(args.child_run, args.seed, args.commands, thresholds)
        return
    if args.baseline:
        compare_with_baseline(args)
        return

    print(f"seed={args.seed} commands={args.commands} python={sys.version.split()[0]}")
    throughput_driver = funded_engine()
    latency_driver = funded_engine()
    stream = generate(args.seed, args.commands, throughput_driver.engine_seq_last + 1)
    mix = {"place": 0, "cancel": 0, "ioc": 0}
    for command in stream.commands:
        if isinstance(command, CancelOrder):
            mix["cancel"] += 1
        elif isinstance(command, PlaceOrder) and command.time_in_force is TimeInForce.IOC:
            mix["ioc"] += 1
        else:
            mix["place"] += 1
    print(f"mix: {mix}")

    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    recorder = PauseRecorder()

    engine_rate = run_engine(throughput_driver, stream)
    reference_rate = run_reference(stream)
    throughput_driver.engine.check_invariants()
    depth = throughput_driver.engine.book_depth("BTC-USDT", levels_max=1_000_000)
    assert depth is not None
    resting = sum(level.order_count for level in depth.bids + depth.asks)
    print(f"(a) engine:    {engine_rate:12,.0f} commands/s  ({resting:,} orders resting at end)")
    print(f"(b) reference: {reference_rate:12,.0f} commands/s")
    print(f"ratio engine/reference: {engine_rate / reference_rate:.2f}x")
    keyed_driver = funded_engine()
    keyed_stream = Stream(
        commands=[
            replace(command, request_id=f"k{command.order_id}")
            if isinstance(command, CancelOrder)
            else command
            for command in stream.commands
        ],
        engine_seq_first=stream.engine_seq_first,
        fills_expected=stream.fills_expected,
    )
    keyed_rate = run_engine(keyed_driver, keyed_stream)
    if keyed_driver.engine.trade_id_last != throughput_driver.engine.trade_id_last:
        msg = "keyed cancels changed the trading"
        raise SystemExit(msg)
    print(f"(d) engine, cancels keyed by request_id: {keyed_rate:12,.0f} commands/s")
    print(f"ratio keyed/unkeyed: {keyed_rate / engine_rate:.3f}")

    gc.callbacks.append(recorder)  # pauses are recorded during the latency run only
    latencies = run_latency(latency_driver, stream)
    gc.callbacks.remove(recorder)
    latencies.sort()
    if latency_driver.engine.state_hash() != throughput_driver.engine.state_hash():
        msg = "the two engine runs diverged"
        raise SystemExit(msg)
    print(
        "(c) latency per command: "
        f"p50={percentile(latencies, 0.50) / 1_000:.1f}us "
        f"p99={percentile(latencies, 0.99) / 1_000:.1f}us "
        f"p99.9={percentile(latencies, 0.999) / 1_000:.1f}us "
        f"max={latencies[-1] / 1_000:.1f}us"
    )
    print(
        f"    gc: thresholds={thresholds} collections(gen0,1,2)={recorder.collections} "
        f"longest pause={recorder.longest_ns / 1e6:.2f}ms "
        f"(thread CPU {recorder.longest_cpu_ns / 1e6:.2f}ms)"
    )
    trades = throughput_driver.engine.trade_id_last
    print(f"trades: engine {trades}, reference {stream.fills_expected}")
    if trades != stream.fills_expected:
        msg = "the engine and the reference book disagree on the number of trades"
        raise SystemExit(msg)


if __name__ == "__main__":
    main()
