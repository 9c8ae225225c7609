"""Ledger settlement throughput beside the raw COPY ceiling, measured in the same run.

    .venv/bin/python bench/ledger_bench.py [--rounds 10000] [--batch-events 2000] [--partitions N]
        [--mix trades|core] [--commands 40000]

A throwaway, durable PostgreSQL cluster (fsync on, default settings) is started in a temp
directory. The workload is a core event stream of one shard:
- `--mix trades` (default): per round, a buyer and a seller reserve, they trade (one 5-leg
  entry with fees), the buyer gets a price-improvement release (4 events, 11 postings),
  over 1,000 traders, after their deposits;
- `--mix core`: the real engine's events (serialized by the core's own envelope encoder) for
  `--commands` commands of bench/engine_bench.py's mix (70 % resting limits, 20 % cancels,
  10 % crossing IOCs; 60 accounts), every event the core emits, order events included. The
  engine alone runs the same commands in the same run: its fills/s is what one core shard
  can produce at most (end to end through gRPC and the WAL the core does less), printed
  beside the fills/s settlement keeps up with.

(a) settlement as the consumer does it: the serialized events of batch N+1 are parsed and
    planned in the planner's process (ledger/batch_planner.py: posting rules, entry and
    account ids, ready COPY text) while batch N is posted (`Settlement.post_ready`, one
    transaction: stream positions and epochs checked, trades deduped, entries and postings
    by COPY, materialized balances, positions, outbox) — everything production does except
    the Kafka read.
(a') the same with planning in a thread of the same process (`Settlement.prepare` +
    `post_prepared`, the consumer before the planner process, and the path the IngestEvents
    RPC takes), measured in the same repeat: the line prints (a)/(a').
(b) ceiling: the same entry and posting rows COPYed into the same tables (same indexes,
    constraints and triggers) of a fresh database, one transaction per batch of the same
    size, nothing else.
(a) and (b) alternate batch by batch (a's batch N, then b's batch N, ...) so that both are
measured under the same momentary load of this shared machine; (a)'s time for a batch ends
when both its write and the planning of the next batch (in a thread) are done.
Printed: postings/s of both, the ratio (a)/(b), and trades/s settled (to set beside the
core's fill rate, docs/benchmarks.md). Also (a)'s CPU per trade by process (the consumer's
process, the planner process, the settlement database's backends; from /proc, the
cluster's background processes left out), and what it allows: at most cores / (CPU per
trade) trades/s on this machine with every core busy, and at most 1 / (database CPU per
trade) for one partition, whose batches one backend writes one transaction after the other.

With --partitions N (N > 1), then also the aggregate of N partitions, as production scales
(one settlement process per partition, `python -m ledger.service --partitions k`): N OS
processes, each settling its own shard's stream (shard-1..N, the same 1,000 traders, so the
balance rows and the fee account are shared) into ONE database, concurrently; then N
processes COPYing the same rows concurrently into a fresh database (the ceiling). Aggregate
postings/s = all postings / (last finish - first start). Not alternating (processes), so
each side sees its own load; printed per repeat, with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import psycopg
from exchange.events.v1.envelope_pb2 import EventEnvelope
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import engine_bench
from bench.process_cpu import process_cpu_seconds
from core.contracts.event_wire import EnvelopeSerializer
from core.engine import ApplyResult, Engine
from core.engine.commands import Command
from core.engine.testing import EngineDriver, btc_usdt_spec
from infra.local.postgres import PostgresCluster
from ledger.batch_planner import BatchPlanner, parse_records
from ledger.db.connection import create_engine
from ledger.db.copy_rows import ENTRIES_COPY, POSTINGS_COPY, entries_text, postings_text
from ledger.db.migrate import SERVICE_ROLE, upgrade
from ledger.gc_tuning import tune_garbage_collector
from ledger.journal import AccountKey, PlannedEntry
from ledger.posting_rules import plan_entry, read_header
from ledger.settlement import Settlement
from ledger.testing import EventStream

TRADERS = 1_000
SERVICE_LOGIN = "ledger_app"


@dataclass(frozen=True)
class Workload:
    batches: list[list[EventEnvelope]]
    postings: int
    trades: int

    @property
    def records(self) -> list[list[bytes]]:
        """The batches as the consumer reads them from the log."""
        return [[envelope.SerializeToString() for envelope in batch] for batch in self.batches]


class _RecordingDriver(EngineDriver):
    """Applies commands and keeps every event as the core's outbox serializes it."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.serialize = EnvelopeSerializer(
            shard_id="shard-1", epoch=1, market_spec=lambda _symbol: btc_usdt_spec()
        )
        self.records: list[bytes] = []

    def apply(self, command: Command) -> ApplyResult:
        result = super().apply(command)
        self.records += self.serialize(result.events, command=command)
        return result


def core_workload(commands: int, batch_events: int) -> tuple[Workload, float]:
    """The engine's events for `commands` commands of engine_bench's mix, and the fills/s of
    the engine alone on the same commands (its own run, timed here)."""
    recorder = engine_bench.funded_engine(_RecordingDriver)
    assert isinstance(recorder, _RecordingDriver)
    stream = engine_bench.generate(
        engine_bench.SEED_DEFAULT, commands, recorder.engine_seq_last + 1
    )
    for command in stream.commands:
        recorder.apply(command)
    timed = engine_bench.funded_engine()
    commands_per_second = engine_bench.run_engine(timed, stream)
    fills = timed.engine.trade_id_last
    if fills != recorder.engine.trade_id_last:
        message = "the two engine runs disagree on the number of trades"
        raise SystemExit(message)
    events = parse_records(recorder.records)
    postings = sum(len(plan.postings) for plan in _plans(events))
    batches = [events[i : i + batch_events] for i in range(0, len(events), batch_events)]
    return Workload(batches, postings, fills), fills * commands_per_second / len(stream.commands)


def workload(rounds: int, batch_events: int, shard_id: str = "shard-1") -> Workload:
    stream = EventStream(shard_id=shard_id)
    events = []
    for trader in range(TRADERS):
        events.append(stream.deposit(f"trader-{trader}", "USDT", 10**15))
        events.append(stream.deposit(f"trader-{trader}", "BTC", 10**15))
    for number in range(rounds):
        buyer = f"trader-{number % TRADERS}"
        seller = f"trader-{(number * 7 + 1) % TRADERS}"
        events += [
            stream.reserve(buyer, "USDT", 50_200_000),
            stream.reserve(seller, "BTC", 100_000),
            stream.trade(
                buyer=buyer,
                seller=seller,
                quantity=100_000,
                notional=50_000_000,
                buyer_fee=100_000,
                seller_fee=50_000,
            ),
            stream.release(buyer, "USDT", 100_000),
        ]
    postings = sum(len(plan.postings) for plan in _plans(events))
    batches = [events[i : i + batch_events] for i in range(0, len(events), batch_events)]
    return Workload(batches, postings, rounds)


def _plans(events: Sequence[EventEnvelope]) -> list[PlannedEntry]:
    plans = []
    for envelope in events:
        plan = plan_entry(envelope, read_header(envelope))
        if plan is not None:
            plans.append(plan)
    return plans


class CopyCeiling:
    """COPY the same entries and postings into a fresh database, batch by batch, with ids
    assigned here (accounts created up front, untimed)."""

    def __init__(self, conninfo: str, work: Workload, *, entry_id_start: int = 0) -> None:
        self._batches = [_plans(batch) for batch in work.batches]
        self._connection = psycopg.connect(conninfo)
        accounts = sorted(
            {p.account for plans in self._batches for e in plans for p in e.postings},
            key=lambda a: (a.owner_id, a.asset, a.kind),
        )
        connection = self._connection
        connection.execute(  # several ceiling processes may create the same accounts
            "INSERT INTO accounts (owner_id, asset, kind) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::smallint[]) ON CONFLICT DO NOTHING",
            (
                [a.owner_id for a in accounts],
                [a.asset for a in accounts],
                [int(a.kind) for a in accounts],
            ),
        )
        connection.commit()
        self._account_ids: dict[AccountKey, int] = {
            AccountKey(owner, asset, kind): account_id
            for account_id, owner, asset, kind in connection.execute(
                "SELECT account_id, owner_id, asset, kind FROM accounts"
            )
        }
        connection.commit()
        self._entry_id = entry_id_start

    def copy_batch(self, index: int) -> float:
        """COPY batch `index` in one transaction; the seconds it took."""
        started = time.perf_counter()
        plans = self._batches[index]
        ids = range(self._entry_id + 1, self._entry_id + 1 + len(plans))
        self._entry_id += len(plans)
        with self._connection.cursor().copy(ENTRIES_COPY) as copy:
            copy.write(entries_text(plans, ids))
        with self._connection.cursor().copy(POSTINGS_COPY) as copy:
            copy.write(postings_text(plans, ids, self._account_ids))
        self._connection.commit()
        return time.perf_counter() - started

    def close(self) -> None:
        self._connection.close()


PLANNER_PROCESS, PLANNER_THREAD = "process", "thread"


@dataclass(frozen=True)
class SettlementCpu:
    """CPU seconds settlement used, by process: the consumer's own process (the event loop,
    and the planner thread in thread mode), the planner process, and the database backends
    of the settlement database (the transactions' and the planner's connection). The
    cluster's background processes (WAL writer, checkpointer, autovacuum) are left out."""

    consumer: float
    planner: float
    database: float

    @property
    def total(self) -> float:
        return self.consumer + self.planner + self.database

    def per_fill_us(self, fills: int) -> str:
        return (
            f"consumer {self.consumer / fills * 1e6:.0f} + planner "
            f"{self.planner / fills * 1e6:.0f} + database {self.database / fills * 1e6:.0f} "
            f"= {self.total / fills * 1e6:.0f} us"
        )


async def _backend_cpu(engine: AsyncEngine) -> dict[int, float]:
    """pid -> CPU seconds of every backend connected to the engine's database."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        pids = [pid for (pid,) in result]
    cpu = {}
    for pid in pids:
        try:
            cpu[pid] = sum(process_cpu_seconds(pid))
        except FileNotFoundError:  # the backend ended meanwhile
            continue
    return cpu


def _planner_cpu(pid: int | None) -> float:
    """CPU seconds of the planner process so far (0 with the planner in a thread)."""
    return 0.0 if pid is None else sum(process_cpu_seconds(pid))


@dataclass(frozen=True)
class SettledRun:
    seconds: float
    cpu: SettlementCpu


async def settle_pipelined(
    url: str,
    work: Workload,
    after_batch: Callable[[int], object] | None = None,
    *,
    planner: str = PLANNER_PROCESS,
    before_clock: Callable[[], object] | None = None,
) -> SettledRun:
    """Settle every batch as the consumer does (batch N+1 parsed and planned while batch N is
    written; `planner`: in the planner process, or in a thread); the seconds and the CPU it
    took, the time of `after_batch(N)` (run once both are done) left out. `before_clock` runs
    once everything is started, just before the clock (the partitions' barrier)."""
    engine = create_engine(url)
    settlement = Settlement(engine)
    records = work.records
    planner_pid = None
    if planner == PLANNER_PROCESS:
        batch_planner = BatchPlanner(url)
        await batch_planner.plan([])  # the process starts (spawn, imports) before the clock
        planner_pid = await batch_planner.process_id()

        async def post(batch: object) -> None:
            await settlement.post_ready(batch)  # type: ignore[arg-type]

        plan: Callable[[list[bytes]], Awaitable[object]] = batch_planner.plan
    else:

        async def post(batch: object) -> None:
            await settlement.post_prepared(batch)  # type: ignore[arg-type]

        def plan(values: list[bytes]) -> Awaitable[object]:
            return asyncio.to_thread(lambda: Settlement.prepare(parse_records(values)))

    backends_before = await _backend_cpu(engine)  # the pool's connection is open from here
    planner_before = _planner_cpu(planner_pid)
    if before_clock is not None:
        before_clock()
    started, cpu_started = time.perf_counter(), time.process_time()
    ready = await plan(records[0])
    settled_seconds = time.perf_counter() - started
    consumer_cpu = time.process_time() - cpu_started
    for index in range(len(records)):
        started, cpu_started = time.perf_counter(), time.process_time()
        planning = None
        if index + 1 < len(records):
            planning = asyncio.ensure_future(plan(records[index + 1]))
        await post(ready)
        if planning is not None:
            ready = await planning
        settled_seconds += time.perf_counter() - started
        consumer_cpu += time.process_time() - cpu_started
        if after_batch is not None:
            after_batch(index)
    planner_cpu = _planner_cpu(planner_pid) - planner_before
    backends_after = await _backend_cpu(engine)
    database_cpu = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
    if planner == PLANNER_PROCESS:
        batch_planner.close()
    await engine.dispose()
    return SettledRun(settled_seconds, SettlementCpu(consumer_cpu, planner_cpu, database_cpu))


@dataclass(frozen=True)
class Measured:
    settled: float  # postings/s
    ceiling: float  # postings/s
    cpu: SettlementCpu  # settlement's


async def measure(url: str, ceiling: CopyCeiling, work: Workload, planner: str) -> Measured:
    """Settlement and the ceiling, alternating batch by batch so that both see the same load
    of this shared machine: the time until batch N is written AND batch N+1 planned is
    settlement's; the ceiling's batch N then runs alone."""
    ceiling_seconds = [0.0]

    def copy_batch(index: int) -> None:
        ceiling_seconds[0] += ceiling.copy_batch(index)

    settled = await settle_pipelined(url, work, copy_batch, planner=planner)
    return Measured(
        work.postings / settled.seconds, work.postings / ceiling_seconds[0], settled.cpu
    )


def _settle_partition(
    url: str, shard_id: str, rounds: int, batch_events: int, start: object
) -> tuple[float, float, int]:
    """One partition's settlement process: (started, finished, postings)."""
    tune_garbage_collector()
    work = workload(rounds, batch_events, shard_id)
    started = [0.0]

    def start_clock() -> None:  # once this partition's planner process is up
        start.wait()  # type: ignore[attr-defined]
        started[0] = time.perf_counter()

    asyncio.run(settle_pipelined(url, work, before_clock=start_clock))
    finished = time.perf_counter()
    return started[0], finished, work.postings


def _copy_partition(
    conninfo: str, shard_id: str, number: int, rounds: int, batch_events: int, start: object
) -> tuple[float, float, int]:
    """One partition's ceiling process: the same rows COPYed (entry ids of its own range)."""
    tune_garbage_collector()
    work = workload(rounds, batch_events, shard_id)
    ceiling = CopyCeiling(conninfo, work, entry_id_start=number * 10**9)
    start.wait()  # type: ignore[attr-defined]
    started = time.perf_counter()
    for index in range(len(work.batches)):
        ceiling.copy_batch(index)
    finished = time.perf_counter()
    ceiling.close()
    return started, finished, work.postings


def _aggregate(results: list[tuple[float, float, int]]) -> float:
    started = min(r[0] for r in results)
    finished = max(r[1] for r in results)
    return sum(r[2] for r in results) / (finished - started)


def measure_partitions(
    cluster: PostgresCluster, partitions: int, rounds: int, batch_events: int, repeat: int
) -> tuple[float, float]:
    """(settlement, ceiling) aggregate postings/s of `partitions` concurrent processes."""
    for name in (f"partitions_settlement_{repeat}", f"partitions_ceiling_{repeat}"):
        upgrade(cluster.create_database(name).url())
    cluster.execute_text(f"GRANT {SERVICE_ROLE} TO {SERVICE_LOGIN}")
    url = cluster.url(
        f"partitions_settlement_{repeat}", user=SERVICE_LOGIN, driver="postgresql+psycopg"
    )
    conninfo = cluster.conninfo(f"partitions_ceiling_{repeat}")
    shards = [f"shard-{number + 1}" for number in range(partitions)]
    context = multiprocessing.get_context("spawn")
    aggregates = []
    # Not a multiprocessing.Pool: its workers are daemons, and a daemon cannot start the
    # settlement's planner process; ProcessPoolExecutor's workers can.
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(max_workers=partitions, mp_context=context) as pool,
    ):
        for work in ("settle", "copy"):
            start = manager.Barrier(partitions)  # all start once all built their workload
            if work == "settle":
                pending = [
                    pool.submit(_settle_partition, url, shard, rounds, batch_events, start)
                    for shard in shards
                ]
            else:
                pending = [
                    pool.submit(
                        _copy_partition, conninfo, shard, number, rounds, batch_events, start
                    )
                    for number, shard in enumerate(shards)
                ]
            aggregates.append(_aggregate([future.result() for future in pending]))
    return aggregates[0], aggregates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--batch-events", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--partitions", type=int, default=1, help="also measure N concurrent partitions (N > 1)"
    )
    parser.add_argument("--mix", choices=("trades", "core"), default="trades")
    parser.add_argument("--commands", type=int, default=40_000, help="engine commands (core mix)")
    arguments = parser.parse_args()
    engine_fills_per_second = None
    if arguments.mix == "core":
        work, engine_fills_per_second = core_workload(arguments.commands, arguments.batch_events)
    else:
        work = workload(arguments.rounds, arguments.batch_events)
    tune_garbage_collector()  # as `python -m ledger.service` does at start, before any work
    events = sum(len(batch) for batch in work.batches)
    print(
        f"workload: {events:,} events, {work.postings:,} postings, {work.trades:,} trades, "
        f"batches of {arguments.batch_events:,} events; {arguments.repeats} alternating repeats "
        "on fresh databases, (a) and (b) alternating per batch (the median ratio is the figure)"
    )
    ratios: dict[str, list[float]] = {PLANNER_PROCESS: [], PLANNER_THREAD: []}
    gains = []
    settled_fills_per_second: list[float] = []
    cpu_per_fill: list[SettlementCpu] = []
    settled_best = ceiling_best = 0.0
    with PostgresCluster(durable=True) as cluster:
        cluster.ensure_login_role(SERVICE_LOGIN)
        for repeat in range(arguments.repeats):
            settled_by_planner = {}
            for planner in (PLANNER_PROCESS, PLANNER_THREAD):
                measured = _measure_repeat(cluster, work, f"{planner}_{repeat}", planner)
                settled, ceiling = measured.settled, measured.ceiling
                settled_by_planner[planner] = settled
                ratios[planner].append(settled / ceiling)
                if planner == PLANNER_PROCESS:
                    settled_best = max(settled_best, settled)
                    ceiling_best = max(ceiling_best, ceiling)
                    cpu_per_fill.append(measured.cpu)
                label = "(a) " if planner == PLANNER_PROCESS else "(a')"
                print(
                    f"  repeat {repeat + 1}: {label} settlement, planner {planner:>7} "
                    f"{settled:>9,.0f} postings/s ({settled / work.postings * events:,.0f} "
                    f"events/s, {settled / work.postings * work.trades:,.0f} trades/s)   "
                    f"(b) COPY ceiling {ceiling:>9,.0f} postings/s   ratio {settled / ceiling:.2f}x"
                )
                print(f"    CPU per trade: {measured.cpu.per_fill_us(work.trades)}")
            gains.append(settled_by_planner[PLANNER_PROCESS] / settled_by_planner[PLANNER_THREAD])
            settled_fills_per_second.append(
                settled_by_planner[PLANNER_PROCESS] / work.postings * work.trades
            )
            print(f"  repeat {repeat + 1}: (a)/(a') {gains[-1]:.2f}x")
    print(
        f"best (a) settlement:   {settled_best:>10,.0f} postings/s "
        f"({settled_best / work.postings * work.trades:,.0f} trades/s)"
    )
    print(f"best (b) COPY ceiling: {ceiling_best:>10,.0f} postings/s")
    print(f"median ratio (a)/(b):  {statistics.median(ratios[PLANNER_PROCESS]):.2f}x")
    print(f"median ratio (a')/(b): {statistics.median(ratios[PLANNER_THREAD]):.2f}x")
    print(f"median (a)/(a'):       {statistics.median(gains):.2f}x")
    _print_cpu_bounds(cpu_per_fill, work.trades)
    if engine_fills_per_second is not None:
        settled_fills = statistics.median(settled_fills_per_second)
        print(
            f"fills: the engine alone produces {engine_fills_per_second:,.0f}/s on these commands; "
            f"settlement (a) keeps up with {settled_fills:,.0f}/s (median), "
            f"{settled_fills / engine_fills_per_second:.2f}x of it"
        )
    if arguments.partitions > 1:
        _print_partitions(arguments, work)


def _measure_repeat(cluster: PostgresCluster, work: Workload, name: str, planner: str) -> Measured:
    """Settlement and the ceiling on two fresh databases, alternating per batch."""
    for database in (f"settlement_{name}", f"ceiling_{name}"):
        upgrade(cluster.create_database(database).url())
    cluster.execute_text(f"GRANT {SERVICE_ROLE} TO {SERVICE_LOGIN}")
    url = cluster.url(f"settlement_{name}", user=SERVICE_LOGIN, driver="postgresql+psycopg")
    ceiling_copy = CopyCeiling(cluster.conninfo(f"ceiling_{name}"), work)
    try:
        return asyncio.run(measure(url, ceiling_copy, work, planner))
    finally:
        ceiling_copy.close()


def _print_cpu_bounds(runs: Sequence[SettlementCpu], trades: int) -> None:
    """What (a)'s CPU per trade allows: settlement can settle at most cores / (CPU per trade)
    trades per second on this machine however well its processes overlap, and one partition
    at most 1 / (database CPU per trade), since one partition's batches are written by one
    backend, one transaction after the other."""
    cores = os.cpu_count() or 1
    median = sorted(runs, key=lambda cpu: cpu.total)[len(runs) // 2]
    total, database = median.total / trades, median.database / trades
    print(
        f"(a) CPU per trade (median repeat): {median.per_fill_us(trades)}; so at most "
        f"{cores / total:,.0f} trades/s on this machine's {cores} cores with every core busy, "
        f"and at most {1 / database:,.0f} trades/s through one database backend (one partition)"
    )


def _print_partitions(arguments: argparse.Namespace, work: Workload) -> None:
    partitions = arguments.partitions
    print(
        f"{partitions} partitions: {partitions} processes x {work.postings:,} postings "
        f"({work.trades:,} trades) each, one database; {arguments.repeats} repeats"
    )
    ratios = []
    with PostgresCluster(durable=True) as cluster:
        cluster.ensure_login_role(SERVICE_LOGIN)
        for repeat in range(arguments.repeats):
            settled, ceiling = measure_partitions(
                cluster, partitions, arguments.rounds, arguments.batch_events, repeat
            )
            ratios.append(settled / ceiling)
            print(
                f"  repeat {repeat + 1}: settlement {settled:>9,.0f} postings/s aggregate "
                f"({settled / work.postings * work.trades:,.0f} trades/s)   "
                f"COPY ceiling {ceiling:>9,.0f} postings/s aggregate   "
                f"ratio {settled / ceiling:.2f}x"
            )
    print(f"median ratio, {partitions} partitions: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
