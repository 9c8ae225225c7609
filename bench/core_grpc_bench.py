"""End-to-end benchmark of the trading core through gRPC, with the WAL fsync on.

Usage: .venv/bin/python bench/core_grpc_bench.py [--commands N] [--unary-commands N]
           [--batch 1000 ...] [--concurrency 64] [--clients 2] [--shards 1] [--runs 1]
           [--seed S] [--no-unary]
           [--server-argument=--flag ...]

The server is the real one (`python -m core.service`), in its own process, on a temp dir
(every acknowledgment waits for the WAL's fsync; group commit allowed). The command mix is
bench/engine_bench.py's generator (70% resting limits near the mid, 20% cancels of live
orders, 10% crossing IOC orders; seed printed), turned into requests: places carry
client_order_id "o<n>", cancels target it by client_order_id. Every generated account
(50 makers, 10 takers) is funded through FundingService and speaks as itself.

With `--shards N`, N core processes run at once, each with its own market, accounts and WAL
(a core shard owns its markets: the contracts carry shard_id), each loaded by its own
clients with seed + k and 1/N of the commands; the figures are the sums over the shards.

The load comes from `--clients` client PROCESSES per shard (accounts split among them, each
account's commands in generator order on one client). Requests are built and SERIALIZED
before the clock starts, responses are kept as bytes and parsed after it stops, so a client
spends its CPU on gRPC alone. All clients start together (a barrier) and the figure is the commands
acknowledged over the wall time from the start to the last answer.

(a) unary: PlaceOrder / CancelOrder, at most `--concurrency` calls in flight in total and
    one per account (a cancel never overtakes its place); a fresh server; calls/s and
    per-call latency p50 / p99 / p99.9 per command.
(b) stream: StreamOrders, one stream per account, `--batch` commands per message (a fresh
    server per batch size); acknowledged orders/s and per-batch round trip p50 / p99 / p99.9
    (a queueing time: every stream keeps its batches in flight).
Each line also prints what the SERVER process spent (user + kernel CPU from /proc, all its
threads, the kernel part shown apart) per command and as a share of the wall time, and what
the clients spent: a server near 100% of one core is the limit; clients near their cores'
capacity mean the bench is.
With `--runs N` every measurement is repeated on a fresh server and the median reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2
from grpc import aio

from bench.engine_bench import MAKERS, SEED_DEFAULT, TAKERS, generate, percentile
from bench.process_cpu import process_cpu_seconds
from core.contracts.enums import SIDE, TIME_IN_FORCE
from core.engine import CancelOrder, PlaceOrder
from core.engine.commands import Command
from core.engine.testing import BTC, USDT
from core.service.testing import ServerProcess, create_btc_usdt, deposit, trader

SERVER_ARGUMENTS: Final = ("--open-orders-max-per-account", "1000000", "--log-level", "WARNING")
SERVICE: Final = "/exchange.trading.v1.TradingService/"
MESSAGE_BYTES_MAX: Final = 64 * 1024 * 1024
CHANNEL_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
)

UnaryRequest = trading_pb2.PlaceOrderRequest | trading_pb2.CancelOrderRequest


def accounts() -> list[str]:
    return [f"maker-{index}" for index in range(MAKERS)] + [
        f"taker-{index}" for index in range(TAKERS)
    ]


def to_request(command: Command, seq: int, prefix: str) -> UnaryRequest:
    """A generated engine command as the API request a client would send."""
    if isinstance(command, PlaceOrder):
        return trading_pb2.PlaceOrderRequest(
            client_order_id=f"{prefix}{seq}",
            symbol=command.symbol,
            side=SIDE.to_proto(command.side),  # type: ignore[arg-type]
            order_type=types_pb2.ORDER_TYPE_LIMIT,
            quantity=command.quantity,
            price=command.price,
            time_in_force=TIME_IN_FORCE.to_proto(command.time_in_force),  # type: ignore[arg-type]
        )
    if isinstance(command, CancelOrder):
        return trading_pb2.CancelOrderRequest(
            client_order_id=f"{prefix}{command.order_id}", request_id=f"c{seq}"
        )
    raise TypeError(command)


def _account_of(command: Command) -> str:
    if isinstance(command, PlaceOrder | CancelOrder):
        return command.account_id
    raise TypeError(command)


def generated(seed: int, count: int, prefix: str) -> dict[str, list[UnaryRequest]]:
    """Each account's requests in generator order (order ids of the generator are its seqs)."""
    stream = generate(seed, count, engine_seq_first=1)
    per_account: dict[str, list[UnaryRequest]] = defaultdict(list)
    for index, command in enumerate(stream.commands):
        per_account[_account_of(command)].append(to_request(command, 1 + index, prefix))
    return per_account


async def prepare(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        for account_id in accounts():
            await deposit(channel, account_id, "BTC", 100_000 * BTC)
            await deposit(channel, account_id, "USDT", 10**9 * USDT)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------- client processes
# A client's work: (account_id, method, serialized requests) per account; it returns a
# ClientReport. Runs in a spawned process; everything it gets and returns is picklable.


@dataclass(frozen=True, slots=True)
class ClientWork:
    address: str
    kind: str  # "unary" or "stream"
    # (account_id, [(method name, serialized request), ...]) per account
    accounts: list[tuple[str, list[tuple[str, bytes]]]]
    concurrency: int  # unary: calls in flight in this client


@dataclass(frozen=True, slots=True)
class ClientReport:
    started_ns: int  # time.monotonic_ns (system-wide clock)
    finished_ns: int
    cpu_seconds: float
    latencies_ns: dict[str, list[int]]  # kind -> latencies
    accepted: int
    rejected: int


async def _unary_client(work: ClientWork, barrier: Barrier) -> ClientReport:
    """One call in flight per account (a cancel never overtakes its place); accounts are
    dealt to `work.concurrency` workers, each going round-robin over its accounts."""
    latencies: dict[str, list[int]] = defaultdict(list)
    calls = sum(len(requests) for _, requests in work.accounts)
    rejected = 0
    async with aio.insecure_channel(work.address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        callables: dict[str, aio.UnaryUnaryMultiCallable[bytes, bytes]] = {
            method: channel.unary_unary(SERVICE + method)
            for method in ("PlaceOrder", "CancelOrder")
        }
        kinds = {"PlaceOrder": "place", "CancelOrder": "cancel"}

        async def worker(accounts: list[tuple[str, list[tuple[str, bytes]]]]) -> None:
            nonlocal rejected
            clock = time.perf_counter_ns
            cursors = [(trader(account_id), iter(requests)) for account_id, requests in accounts]
            while cursors:
                for cursor in list(cursors):
                    metadata, requests = cursor
                    call = next(requests, None)
                    if call is None:
                        cursors.remove(cursor)
                        continue
                    method, request = call
                    started = clock()
                    try:
                        await callables[method](request, metadata=metadata)
                        kind = kinds[method]
                    except aio.AioRpcError:
                        rejected += 1
                        kind = "rejected"
                    latencies[kind].append(clock() - started)

        workers = min(work.concurrency, len(work.accounts))
        await asyncio.to_thread(barrier.wait)
        cpu_started = own_cpu_seconds()
        started_ns = time.monotonic_ns()
        await asyncio.gather(*(worker(work.accounts[index::workers]) for index in range(workers)))
        finished_ns = time.monotonic_ns()
    return ClientReport(
        started_ns,
        finished_ns,
        own_cpu_seconds() - cpu_started,
        dict(latencies),
        calls - rejected,
        rejected,
    )


async def _batches(batches: Sequence[bytes], sent_ns: list[int]) -> AsyncIterator[bytes]:
    for batch in batches:
        sent_ns.append(time.perf_counter_ns())
        yield batch


async def _stream_client(work: ClientWork, barrier: Barrier) -> ClientReport:
    round_trips: list[int] = []
    answers: list[bytes] = []
    async with aio.insecure_channel(work.address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        stream_orders: aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            SERVICE + "StreamOrders"
        )

        async def timed_stream(account_id: str, batches: list[bytes]) -> None:
            sent_ns: list[int] = []
            index = 0
            call = stream_orders(_batches(batches, sent_ns), metadata=trader(account_id))
            async for response in call:
                round_trips.append(time.perf_counter_ns() - sent_ns[index])
                index += 1
                answers.append(response)

        await asyncio.to_thread(barrier.wait)
        cpu_started = own_cpu_seconds()
        started_ns = time.monotonic_ns()
        await asyncio.gather(
            *(
                timed_stream(account_id, [request for _, request in requests])
                for account_id, requests in work.accounts
            )
        )
        finished_ns = time.monotonic_ns()
        cpu_seconds = own_cpu_seconds() - cpu_started
    accepted = rejected = 0
    for answer in answers:  # parsed after the clock stopped
        response = trading_pb2.StreamOrdersResponse.FromString(answer)
        for result in response.results:
            if result.HasField("error"):
                rejected += 1
            else:
                accepted += 1
    return ClientReport(
        started_ns, finished_ns, cpu_seconds, {"batch": round_trips}, accepted, rejected
    )


def _client_main(
    work: ClientWork, barrier: Barrier, reports: multiprocessing.Queue[ClientReport]
) -> None:
    client = _unary_client if work.kind == "unary" else _stream_client
    reports.put(asyncio.run(client(work, barrier)))


@dataclass(frozen=True, slots=True)
class Measurement:
    rate: float  # acknowledged commands per second
    commands: int
    accepted: int
    rejected: int
    wall_seconds: float
    server_cpu_seconds: float  # user + system
    server_system_seconds: float  # of which in the kernel (socket I/O, WAL writes and fsyncs)
    client_cpu_seconds: float
    latencies_ns: dict[str, list[int]]

    @property
    def server_cpu_us_per_command(self) -> float:
        return self.server_cpu_seconds / self.commands * 1e6


def run_clients(server_pids: Sequence[int], works: list[ClientWork]) -> Measurement:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(works) + 1)
    reports: multiprocessing.Queue[ClientReport] = context.Queue()
    processes = [
        context.Process(target=_client_main, args=(work, barrier, reports)) for work in works
    ]
    for process in processes:
        process.start()
    barrier.wait()
    started = [process_cpu_seconds(pid) for pid in server_pids]
    collected = [reports.get() for _ in processes]
    finished = [process_cpu_seconds(pid) for pid in server_pids]
    user = sum(after[0] - before[0] for before, after in zip(started, finished, strict=True))
    system = sum(after[1] - before[1] for before, after in zip(started, finished, strict=True))
    for process in processes:
        process.join()
    wall = (max(r.finished_ns for r in collected) - min(r.started_ns for r in collected)) / 1e9
    latencies: dict[str, list[int]] = defaultdict(list)
    for report in collected:
        for kind, values in report.latencies_ns.items():
            latencies[kind].extend(values)
    accepted = sum(report.accepted for report in collected)
    rejected = sum(report.rejected for report in collected)
    return Measurement(
        rate=(accepted + rejected) / wall,
        commands=accepted + rejected,
        accepted=accepted,
        rejected=rejected,
        wall_seconds=wall,
        server_cpu_seconds=user + system,
        server_system_seconds=system,
        client_cpu_seconds=sum(report.cpu_seconds for report in collected),
        latencies_ns=dict(latencies),
    )


def split(
    per_account: list[tuple[str, list[tuple[str, bytes]]]], clients: int
) -> list[list[tuple[str, list[tuple[str, bytes]]]]]:
    """Accounts dealt round-robin to the clients (an account's commands stay on one)."""
    shares: list[list[tuple[str, list[tuple[str, bytes]]]]] = [[] for _ in range(clients)]
    for index, item in enumerate(per_account):
        shares[index % clients].append(item)
    return [share for share in shares if share]


def unary_work(
    address: str, shard: int, *, seed: int, count: int, clients: int, concurrency: int, shards: int
) -> list[ClientWork]:
    """Shard k's unary calls: seed + k, count / shards commands."""
    per_account = [
        (
            account_id,
            [
                (
                    "PlaceOrder"
                    if isinstance(request, trading_pb2.PlaceOrderRequest)
                    else "CancelOrder",
                    request.SerializeToString(),
                )
                for request in requests
            ],
        )
        for account_id, requests in generated(seed + shard, count // shards, "u").items()
    ]
    shares = split(per_account, clients)
    return [
        ClientWork(address, "unary", share, max(1, concurrency // len(shares))) for share in shares
    ]


def stream_work(
    address: str, shard: int, *, seed: int, count: int, batch_size: int, clients: int, shards: int
) -> list[ClientWork]:
    """Shard k's streams: seed + k, count / shards commands."""
    per_account: list[tuple[str, list[tuple[str, bytes]]]] = []
    for account_id, requests in generated(seed + shard, count // shards, "s").items():
        commands = [
            trading_pb2.OrderCommand(place=request)
            if isinstance(request, trading_pb2.PlaceOrderRequest)
            else trading_pb2.OrderCommand(cancel=request)
            for request in requests
        ]
        batches = [
            (
                "StreamOrders",
                trading_pb2.StreamOrdersRequest(
                    batch_id=str(start), commands=commands[start : start + batch_size]
                ).SerializeToString(),
            )
            for start in range(0, len(commands), batch_size)
        ]
        per_account.append((account_id, batches))
    return [ClientWork(address, "stream", share, 0) for share in split(per_account, clients)]


def report(name: str, latencies_ns: list[int]) -> str:
    latencies_ns.sort()
    return (
        f"{name} ({len(latencies_ns):,}) p50={percentile(latencies_ns, 0.50) / 1e6:.2f}ms "
        f"p99={percentile(latencies_ns, 0.99) / 1e6:.2f}ms "
        f"p99.9={percentile(latencies_ns, 0.999) / 1e6:.2f}ms "
        f"max={latencies_ns[-1] / 1e6:.2f}ms"
    )


def cpu_line(measurement: Measurement, clients: int) -> str:
    wall = measurement.wall_seconds
    client_us = measurement.client_cpu_seconds / measurement.commands * 1e6
    return (
        f"    server CPU {measurement.server_cpu_us_per_command:.1f} us/command "
        f"({measurement.server_system_seconds / measurement.commands * 1e6:.1f} in the kernel), "
        f"{measurement.server_cpu_seconds / wall:.0%} of wall; {clients} client processes "
        f"{measurement.client_cpu_seconds / wall:.0%} of wall ({client_us:.1f} us/command)"
    )


def measure(
    data_dir: Path,
    server_arguments: Sequence[str],
    works: Callable[[str, int], list[ClientWork]],
    shards: int,
) -> Measurement:
    """Start `shards` core processes (each its own market, accounts and WAL, as core shards
    are), load them at once with `works(address, shard)`'s clients; the sum over shards."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                ServerProcess(data_dir / f"shard-{shard}", *SERVER_ARGUMENTS, *server_arguments)
            )
            for shard in range(shards)
        ]
        for server in servers:
            asyncio.run(prepare(server.address))
        return run_clients(
            [server.pid for server in servers],
            [work for shard, server in enumerate(servers) for work in works(server.address, shard)],
        )


def median_of(measurements: list[Measurement]) -> Measurement:
    ordered = sorted(measurements, key=lambda measurement: measurement.rate)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--unary-commands", type=int, default=20_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1_000])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--runs", type=int, default=1, help="fresh servers per figure (median)")
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT)
    parser.add_argument("--server-argument", action="append", default=[], help="passed through")
    parser.add_argument("--no-unary", action="store_true")
    parser.add_argument(
        "--shards", type=int, default=1, help="core processes, each its own market and accounts"
    )
    args = parser.parse_args()
    print(
        f"seed={args.seed} unary={args.unary_commands:,} stream={args.commands:,} "
        f"batches={args.batch} shards={args.shards} clients={args.clients} per shard "
        f"runs={args.runs} "
        f"python={sys.version.split()[0]} load={os.getloadavg()[0]:.1f}"
    )
    unary_rate = 0.0
    with tempfile.TemporaryDirectory(prefix="core-grpc-bench-") as temp:

        def measure_runs(name: str, works: Callable[..., list[ClientWork]]) -> list[Measurement]:
            return [
                measure(Path(temp) / f"{name}-{run}", args.server_argument, works, args.shards)
                for run in range(args.runs)
            ]

        common = {"seed": args.seed, "clients": args.clients, "shards": args.shards}
        if not args.no_unary:
            runs = measure_runs(
                "unary",
                functools.partial(
                    unary_work, count=args.unary_commands, concurrency=args.concurrency, **common
                ),
            )
            unary = median_of(runs)
            unary_rate = unary.rate
            print(
                f"(a) unary, {min(args.concurrency, MAKERS + TAKERS)} in flight (one per "
                f"account at most): {unary.rate:,.0f} calls/s "
                f"({unary.commands:,} calls, {unary.rejected:,} rejected by name; runs: "
                + ", ".join(f"{run.rate:,.0f}" for run in runs)
                + ")"
            )
            for kind in ("place", "cancel", "rejected"):
                if unary.latencies_ns.get(kind):
                    print("    " + report(f"{kind:<8}", unary.latencies_ns[kind]))
            print(cpu_line(unary, args.clients))
        for batch_size in args.batch:
            runs = measure_runs(
                f"stream-{batch_size}",
                functools.partial(
                    stream_work, count=args.commands, batch_size=batch_size, **common
                ),
            )
            stream = median_of(runs)
            print(
                f"(b) stream, {args.shards * (MAKERS + TAKERS)} streams, "
                f"batches of {batch_size:,}: "
                f"{stream.rate:,.0f} orders/s ({stream.commands:,} acknowledged: "
                f"{stream.accepted:,} accepted, {stream.rejected:,} rejected by name; runs: "
                + ", ".join(f"{run.rate:,.0f}" for run in runs)
                + ")"
            )
            print("    " + report("batch round trip", stream.latencies_ns["batch"]))
            print(cpu_line(stream, args.clients))
            if unary_rate:
                print(f"    stream ({batch_size:,}) / unary: {stream.rate / unary_rate:.1f}x")


if __name__ == "__main__":
    main()
