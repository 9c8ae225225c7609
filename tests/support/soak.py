"""The soak: a local exchange driven through the SDK for a given time at a given order rate,
sampled once a minute, drained, and reconciled exactly (bench/soak.py is its command line;
tests/soak runs a short form).

Every `sample_seconds` it prints one line for the exchange and one per process:
- orders acknowledged (placements, rejections included) and their rate, other commands,
  rejections, calls that ended UNAVAILABLE, and the placement latency through Envoy;
- the ledger's lag behind the core in engine seq (the core's engine_seq minus the highest
  engine seq the ledger has settled), sampled every `lag_sample_seconds`, the minute's last
  and highest value;
- broker errors: error lines the broker logged, plus Kafka client errors the services logged
  (`KafkaConnectionError`, `KafkaTimeoutError`, ...), in that minute;
- WebSocket lag: from a trade's `executed_at` to its arrival on `trades:<SYMBOL>` through
  Envoy (p50, p99, max);
- each process's memory (PSS, with its children), open files and CPU (cores busy over the
  interval), the soak's own process (the load: SDK clients) too; then the CPU all of them
  used per placement and the placement rate this machine's cores would bear at that cost
  (`cpu_bound_per_second`): when the rate asked is above it, the machine, not the
  exchange, is what stops the rate (docs/benchmarks.md, "Soak").

At the end it stops the load, retries the placements whose outcome was unknown, waits until
the ledger has settled everything the core published, and checks: reconciliation of the
whole shard MATCHED with no gap, every ledger invariant holds, each load account's ledger
AVAILABLE/HELD equal the core's. Then it judges the aims (`SoakReport.aims`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange_sdk.websocket import MarketDataSocket, TradeEvent

from infra.local.components import DEMO_SYMBOLS
from tests.support.exchange_access import (
    core_trader_balances,
    engine_status,
    invariant_violations,
    ledger_trader_balances,
    reconciliation,
    settled_reconciliation,
)
from tests.support.local_stack import StackCommand
from tests.support.process_usage import ProcessUsage, stack_usage
from tests.support.trading_load import LoadProfile, TradingLoad

MIB: Final = 1024 * 1024
# Flat after warm-up: what a process may grow by between the first sample after warm-up and
# the last one (whichever of the two bounds is larger).
MEMORY_GROWTH_FRACTION_MAX: Final = 0.10
MEMORY_GROWTH_BYTES_MAX: Final = 24 * MIB
OPEN_FILES_GROWTH_FRACTION_MAX: Final = 0.10
OPEN_FILES_GROWTH_MAX: Final = 10
# The load is paced (tests/support/trading_load.py's Pacer): the rate reached is the aim's
# less the first interval's start-up and scheduling jitter, never more.
RATE_SHORTFALL_MAX: Final = 0.02
CORES: Final = os.cpu_count() or 1
# The core's per-account windows in a soak (ADR 0019; default 10,000): small enough that
# every window of the load's accounts is full within the warm-up, so that memory still
# growing after it is a leak, not a window filling (at 10,000 the core grows ~20 MiB a
# minute at 115 placements/s for most of an hour before it levels).
SOAK_HISTORY_WINDOW: Final = 500
LOAD: Final = "load"  # the soak's own process in the CPU figures
LAG_GROWTH_SECONDS_MAX: Final = 60.0
LAG_NOISE_SEQS: Final = 100
_CLIENT_ERROR = re.compile(r"Kafka(Connection|Timeout)Error|KafkaError|NodeNotReadyError")
_BROKER_ERROR = re.compile(r"\bERROR\b")


@dataclass(frozen=True)
class SoakOptions:
    minutes: float
    orders_per_second: float
    warmup_minutes: float = 1.0
    sample_seconds: float = 60.0
    lag_sample_seconds: float = 5.0
    drain_timeout_seconds: float = 300.0
    seed: int = 0


class LogWatch:
    """Counts new lines matching a pattern in the stack's logs since the last call."""

    def __init__(self, log_directory: Path) -> None:
        self._directory = log_directory
        self._offsets: dict[Path, int] = {}

    def new_errors(self) -> int:
        count = 0
        for path in sorted(self._directory.glob("*.log")):
            pattern = _BROKER_ERROR if path.stem == "broker" else _CLIENT_ERROR
            offset = self._offsets.get(path, 0)
            with path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            # Only whole lines: a line being written is read next time.
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = offset + len(whole)
            count += sum(
                1 for line in whole.decode(errors="replace").splitlines() if pattern.search(line)
            )
        return count


class TradeLatency:
    """Receives `trades:<SYMBOL>` through Envoy and keeps executed_at -> arrival in ms."""

    def __init__(self) -> None:
        self.samples_ms: list[float] = []
        self.received = 0

    async def run(self, load: TradingLoad, websocket_url: str, symbols: Sequence[str]) -> None:
        catalog = load.clients[load.accounts[0]].catalog
        async with MarketDataSocket(websocket_url) as socket:
            await socket.subscribe(*(f"trades:{symbol}" for symbol in symbols))
            async for event in socket.events(catalog):
                if isinstance(event, TradeEvent) and event.trade.executed_at is not None:
                    lag = datetime.now(tz=UTC) - event.trade.executed_at
                    self.samples_ms.append(lag.total_seconds() * 1000)
                    self.received += 1

    def take(self) -> list[float]:
        samples, self.samples_ms = self.samples_ms, []
        return samples


def percentile(samples: Sequence[float], fraction: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True)
class Sample:
    elapsed_seconds: float
    placed: int  # acknowledged placements in the interval
    placed_per_second: float
    commands: int  # other acknowledged commands (cancel, amend, funding) in the interval
    rejections: int
    unavailable: int
    place_latency_p99_ms: float
    ledger_lag: int  # at the end of the interval
    ledger_lag_max: int  # highest sampled in the interval
    broker_errors: int
    websocket_lag_ms: tuple[float, float, float]  # p50, p99, max
    trades_received: int
    usage: dict[str, ProcessUsage]
    cpu_cores_busy: dict[str, float] = field(default_factory=dict)  # per process, + "load"
    interval_seconds: float = 0.0

    @property
    def cpu_per_placement_ms(self) -> float:
        seconds = sum(self.cpu_cores_busy.values()) * self.interval_seconds
        return 1000 * seconds / self.placed if self.placed else 0.0

    @property
    def cpu_bound_per_second(self) -> float:
        """Placements a second that all this machine's cores would bear at the interval's
        CPU cost per placement (the load's own CPU included: it runs here too)."""
        cost = self.cpu_per_placement_ms
        return 1000 * CORES / cost if cost else 0.0


@dataclass
class SoakReport:
    options: SoakOptions
    samples: list[Sample] = field(default_factory=list)
    reconciliation_status: str = ""
    reconciliation_detail: str = ""
    aims: dict[str, tuple[bool, str]] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return all(met for met, _detail in self.aims.values())


def soak_stack_environment(history_window: int = SOAK_HISTORY_WINDOW) -> dict[str, str]:
    """The settings a soak's stack runs with (`running_local_stack(environment=...)`)."""
    return {"EXCHANGE_CORE_HISTORY_WINDOW": str(history_window)}


def ledger_lag(stack: StackCommand) -> int:
    """The core's engine_seq minus the highest engine seq the ledger has settled."""
    engine_seq = engine_status(stack).engine_seq
    return max(0, engine_seq - reconciliation(stack, engine_seq).ledger_engine_seq)


def format_sample(sample: Sample) -> str:
    p50, p99, highest = sample.websocket_lag_ms
    head = (
        f"[{sample.elapsed_seconds / 60:5.1f} min] orders {sample.placed} "
        f"({sample.placed_per_second:.0f}/s, p99 {sample.place_latency_p99_ms:.0f} ms) "
        f"other {sample.commands} rejected {sample.rejections} unavailable {sample.unavailable} "
        f"| ledger lag {sample.ledger_lag} (max {sample.ledger_lag_max}) "
        f"| broker errors {sample.broker_errors} "
        f"| ws lag p50 {p50:.0f} p99 {p99:.0f} max {highest:.0f} ms ({sample.trades_received})"
    )
    processes = "  ".join(
        f"{name} {usage.memory_bytes / MIB:.0f}M/{usage.open_files}f"
        + (f"/{100 * sample.cpu_cores_busy[name]:.0f}%" if name in sample.cpu_cores_busy else "")
        for name, usage in sample.usage.items()
    )
    busy = sum(sample.cpu_cores_busy.values())
    cpu = (
        f"cpu: {busy:.2f} of {CORES} cores busy (load {sample.cpu_cores_busy.get(LOAD, 0):.2f}), "
        f"{sample.cpu_per_placement_ms:.1f} ms per placement: "
        f"{sample.cpu_bound_per_second:.0f}/s would fill the cores"
    )
    return f"{head}\n    {processes}\n    {cpu}"


def cpu_cores_busy(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Cores busy per process over `seconds`, from two readings of CPU seconds."""
    if seconds <= 0:
        return {}
    return {
        name: max(0.0, after[name] - before[name]) / seconds
        for name in after.keys() & before.keys()
    }


def cpu_readings(usage: dict[str, ProcessUsage]) -> dict[str, float]:
    """CPU seconds per component, and the load's (this process, every thread)."""
    times = os.times()
    return {
        **{name: figures.cpu_seconds for name, figures in usage.items()},
        LOAD: times.user + times.system,
    }


def _grown(
    first: dict[str, ProcessUsage],
    last: dict[str, ProcessUsage],
    figure: str,
    fraction: float,
    absolute: int,
) -> dict[str, tuple[int, int]]:
    """The processes whose `figure` grew by more than `fraction` of it (and `absolute`)."""
    grown = {}
    for name in first.keys() & last.keys():
        before, after = getattr(first[name], figure), getattr(last[name], figure)
        if after - before > max(before * fraction, absolute):
            grown[name] = (before, after)
    return grown


def _lag_bounded(samples: Sequence[Sample], rate: float) -> tuple[bool, str]:
    """Bounded: the ledger's lag never keeps growing for more than LAG_GROWTH_SECONDS_MAX.
    An interval counts as growing when the lag rose by more than a second of traffic's worth
    of seqs (at least LAG_NOISE_SEQS): a sampled lag jitters with the moment it is taken."""
    noise = max(LAG_NOISE_SEQS, int(rate))
    longest = run = 0.0
    previous: Sample | None = None
    for sample in samples:
        if previous is not None and sample.ledger_lag - previous.ledger_lag > noise:
            run += sample.elapsed_seconds - previous.elapsed_seconds
        else:
            run = 0.0
        longest = max(longest, run)
        previous = sample
    lags = [sample.ledger_lag for sample in samples]
    highest = max((sample.ledger_lag_max for sample in samples), default=0)
    detail = (
        f"per interval {lags}, max sampled {highest}, longest growth {longest:.0f}s "
        f"(aim <= {LAG_GROWTH_SECONDS_MAX:.0f}s, noise {noise} seqs)"
    )
    return longest <= LAG_GROWTH_SECONDS_MAX, detail


def judge(report: SoakReport, *, rate_aim: float) -> None:
    """Fills `report.aims`: rate, broker errors, bounded ledger lag, flat memory and open
    files after warm-up, exact reconciliation."""
    samples = report.samples
    options = report.options
    total_placed = sum(sample.placed for sample in samples)
    elapsed = samples[-1].elapsed_seconds if samples else 0.0
    rate = total_placed / elapsed if elapsed else 0.0
    floor = rate_aim * (1 - RATE_SHORTFALL_MAX)
    bounds = [sample.cpu_bound_per_second for sample in samples if sample.placed]
    bound = f"; {CORES} cores would bear {statistics.median(bounds):.0f}/s at the CPU per placement"
    report.aims["order rate"] = (
        rate >= floor,
        f"{rate:.1f}/s (aim {rate_aim:.0f}/s, at least {floor:.1f}/s)" + (bound if bounds else ""),
    )
    errors = sum(sample.broker_errors for sample in samples)
    report.aims["broker errors"] = (errors == 0, f"{errors}")
    report.aims["ledger lag bounded"] = _lag_bounded(samples, options.orders_per_second)
    warm = [sample for sample in samples if sample.elapsed_seconds >= options.warmup_minutes * 60]
    if len(warm) >= 2:
        first, last = warm[0].usage, warm[-1].usage
        grown_memory = {
            name: (before // MIB, after // MIB)
            for name, (before, after) in _grown(
                first, last, "memory_bytes", MEMORY_GROWTH_FRACTION_MAX, MEMORY_GROWTH_BYTES_MAX
            ).items()
        }
        grown_files = _grown(
            first, last, "open_files", OPEN_FILES_GROWTH_FRACTION_MAX, OPEN_FILES_GROWTH_MAX
        )
        report.aims["memory flat after warm-up"] = (
            not grown_memory,
            f"grown (MiB): {grown_memory}",
        )
        report.aims["open files flat after warm-up"] = (not grown_files, f"grown: {grown_files}")
    else:
        report.aims["memory flat after warm-up"] = (False, "fewer than two samples after warm-up")
        report.aims["open files flat after warm-up"] = (False, "fewer than two samples")
    report.aims["reconciliation exact"] = (
        report.reconciliation_status == "MATCHED",
        f"{report.reconciliation_status} {report.reconciliation_detail}".strip(),
    )


async def _sample_lag(
    stack: StackCommand, interval: float, lags: list[int], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            lags.append(await asyncio.to_thread(ledger_lag, stack))
        except Exception as error:  # noqa: BLE001 - a failed sample is reported, not fatal
            print(f"    (ledger lag sample failed: {error!r})")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def reconcile_exactly(
    stack: StackCommand, accounts: Sequence[str], timeout_seconds: float
) -> tuple[str, str]:
    """(status, detail): MATCHED only when the whole shard matches with no gap, every
    invariant holds and each account's ledger balances equal the core's."""
    report = settled_reconciliation(stack, timeout_seconds=timeout_seconds)
    status = ledger_types_pb2.ReconciliationStatus.Name(report.status).removeprefix(
        "RECONCILIATION_STATUS_"
    )
    if status != "MATCHED" or report.gaps:  # LAGGING: the ledger lags past its bound
        lag = f"lag {report.lag_engine_seqs} seqs, stalled {report.stalled_for.ToMilliseconds()} ms"
        return status, f"{lag}; gaps {list(report.gaps)[:5]}"
    violations = invariant_violations(stack)
    if violations:
        return "INVARIANT_VIOLATED", "; ".join(violations[:5])
    unequal = [
        account
        for account in accounts
        if ledger_trader_balances(stack, account) != core_trader_balances(stack, account)
    ]
    if unequal:
        return "BALANCES_DIFFER", ", ".join(unequal)
    return "MATCHED", f"at engine_seq {report.engine_seq}"


async def run_soak(
    stack: StackCommand,
    options: SoakOptions,
    *,
    profile: LoadProfile | None = None,
    output: Callable[[str], None] = print,
) -> SoakReport:
    """Drives `stack` (already up) for `options.minutes`; returns the judged report (the
    caller chooses the rate aim through `judge`, run here with the asked rate)."""
    load = TradingLoad(
        edge_address=stack.edge_address,
        core_address=stack.core_address,
        gateway_grpc_address=stack.gateway_grpc_address,
        profile=profile
        or LoadProfile(orders_per_second=options.orders_per_second, seed=options.seed),
        account_prefix=f"soak{options.seed % 10_000}",
    )
    report = SoakReport(options)
    await load.set_up(DEMO_SYMBOLS)
    logs = LogWatch(stack.var / "log")
    logs.new_errors()  # what the start-up logged is not the soak's
    latency = TradeLatency()
    stop = asyncio.Event()
    lags: list[int] = []
    websocket = asyncio.create_task(
        latency.run(load, f"ws://{stack.edge_address}/ws", DEMO_SYMBOLS)
    )
    lag_sampler = asyncio.create_task(_sample_lag(stack, options.lag_sample_seconds, lags, stop))
    driver = asyncio.create_task(load.run(stop))
    started = time.monotonic()
    end = started + options.minutes * 60
    previous_placed = 0
    previous_commands = 0
    previous_rejections = 0
    previous_unavailable = 0
    interval_started = started
    cpu_before = cpu_readings(stack_usage(stack.var))
    try:
        while True:
            now = time.monotonic()
            wake = min(end, interval_started + options.sample_seconds)
            await asyncio.sleep(max(0.0, wake - now))
            if driver.done():
                driver.result()  # the load failed: raise it
            now = time.monotonic()
            stats = load.stats
            commands = sum(stats.commands.values()) - stats.commands["place"]
            rejections = sum(stats.rejections.values())
            interval_lags, lags[:] = list(lags), []
            websocket_samples = latency.take()
            usage = stack_usage(stack.var)
            cpu_now = cpu_readings(usage)
            sample = Sample(
                elapsed_seconds=now - started,
                placed=stats.placed - previous_placed,
                placed_per_second=(stats.placed - previous_placed) / (now - interval_started),
                commands=commands - previous_commands,
                rejections=rejections - previous_rejections,
                unavailable=stats.unavailable - previous_unavailable,
                place_latency_p99_ms=percentile(stats.take_latencies(), 0.99),
                ledger_lag=interval_lags[-1] if interval_lags else -1,
                ledger_lag_max=max(interval_lags, default=-1),
                broker_errors=logs.new_errors(),
                websocket_lag_ms=(
                    percentile(websocket_samples, 0.5),
                    percentile(websocket_samples, 0.99),
                    max(websocket_samples, default=0.0),
                ),
                trades_received=len(websocket_samples),
                usage=usage,
                cpu_cores_busy=cpu_cores_busy(cpu_before, cpu_now, now - interval_started),
                interval_seconds=now - interval_started,
            )
            report.samples.append(sample)
            output(format_sample(sample))
            previous_placed, previous_commands = stats.placed, commands
            previous_rejections, previous_unavailable = rejections, stats.unavailable
            interval_started, cpu_before = now, cpu_now
            if now >= end:
                break
    finally:
        stop.set()
        await driver
        lag_sampler.cancel()
        websocket.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await websocket
        with contextlib.suppress(asyncio.CancelledError):
            await lag_sampler
    output(f"load stopped: {_load_summary(load)}; draining")
    disagreements = await load.resolve_unknown()
    await load.close()
    drain_started = time.monotonic()
    status, detail = await asyncio.to_thread(
        reconcile_exactly, stack, load.accounts, options.drain_timeout_seconds
    )
    if disagreements:
        status, detail = "RETRY_DISAGREES", ", ".join(disagreements[:5])
    report.reconciliation_status, report.reconciliation_detail = status, detail
    output(f"drained in {time.monotonic() - drain_started:.1f}s; reconciliation: {status} {detail}")
    judge(report, rate_aim=options.orders_per_second)
    return report


def _load_summary(load: TradingLoad) -> str:
    stats = load.stats
    latencies = stats.place_latencies_ms
    median = statistics.median(latencies) if latencies else 0.0
    return (
        f"placed {stats.placed}, commands {dict(stats.commands)}, fills {stats.fills}, "
        f"rejections {dict(stats.rejections.most_common(6))}, unavailable {stats.unavailable}, "
        f"errors {dict(stats.errors)}, unknown outcomes {len(load.acknowledged.unknown_placements)}"
        + (f", place p50 {median:.1f} ms" if latencies else "")
    )


def format_aims(report: SoakReport) -> str:
    lines = [
        f"  {'MET    ' if met else 'NOT MET'} {name}: {detail}"
        for name, (met, detail) in report.aims.items()
    ]
    verdict = "all aims met" if report.met else "aims NOT met"
    return "\n".join([f"aims ({verdict}):", *lines])
