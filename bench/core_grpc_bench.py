"""End-to-end benchmark of the trading core through gRPC, with the WAL fsync on.

Usage: .venv/bin/python bench/core_grpc_bench.py [--commands N] [--unary-commands N]
           [--batch 1000] [--concurrency 64] [--seed S]

The server is the real one (`python -m core.service`), in a separate process, on a temp dir
(every acknowledgment waits for the WAL's fsync; group commit allowed). The command mix is
bench/engine_bench.py's generator (70% resting limits near the mid, 20% cancels of live
orders, 10% crossing IOC orders; seed printed), turned into requests: places carry
client_order_id "o<n>", cancels target it by client_order_id. Every generated account
(50 makers, 10 takers) is funded through FundingService and speaks as itself.

(a) unary: PlaceOrder / CancelOrder with `--concurrency` calls in flight (a fresh server);
    calls/s and per-call latency p50 / p99 / p99.9.
(b) stream: StreamOrders, one stream per account, the account's commands in generator order,
    `--batch` commands per message (a fresh server); acknowledged orders/s and per-batch
    round trip p50 / p99 / p99.9.
Requests are built before the clock starts. The ratio (b)/(a) is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from grpc import aio

from bench.engine_bench import MAKERS, SEED_DEFAULT, TAKERS, generate, percentile
from core.contracts.enums import SIDE, TIME_IN_FORCE
from core.engine import CancelOrder, PlaceOrder
from core.engine.commands import Command
from core.engine.testing import BTC, USDT
from core.service.testing import ServerProcess, create_btc_usdt, deposit, trader

SERVER_ARGUMENTS: Final = ("--open-orders-max-per-account", "1000000", "--log-level", "WARNING")


def accounts() -> list[str]:
    return [f"maker-{index}" for index in range(MAKERS)] + [
        f"taker-{index}" for index in range(TAKERS)
    ]


def to_request(
    command: Command, seq: int, prefix: str
) -> trading_pb2.PlaceOrderRequest | trading_pb2.CancelOrderRequest:
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


def generated(
    seed: int, count: int, prefix: str
) -> list[tuple[str, trading_pb2.PlaceOrderRequest | trading_pb2.CancelOrderRequest]]:
    """(account, request) in generator order; order ids of the generator are its seqs 1.."""
    stream = generate(seed, count, engine_seq_first=1)
    return [
        (_account_of(command), to_request(command, 1 + index, prefix))
        for index, command in enumerate(stream.commands)
    ]


async def prepare(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        for account_id in accounts():
            await deposit(channel, account_id, "BTC", 100_000 * BTC)
            await deposit(channel, account_id, "USDT", 10**9 * USDT)


def report(name: str, latencies_ns: list[int]) -> str:
    latencies_ns.sort()
    return (
        f"{name} p50={percentile(latencies_ns, 0.50) / 1e6:.2f}ms "
        f"p99={percentile(latencies_ns, 0.99) / 1e6:.2f}ms "
        f"p99.9={percentile(latencies_ns, 0.999) / 1e6:.2f}ms "
        f"max={latencies_ns[-1] / 1e6:.2f}ms"
    )


async def run_unary(address: str, seed: int, count: int, concurrency: int) -> float:
    requests = generated(seed, count, "u")
    latencies: dict[str, list[int]] = defaultdict(list)
    rejected = 0
    async with aio.insecure_channel(address) as channel:
        stub = trading_pb2_grpc.TradingServiceStub(channel)
        metadata = {account_id: trader(account_id) for account_id in accounts()}
        position = 0

        async def worker() -> None:
            nonlocal position, rejected
            clock = time.perf_counter_ns
            while position < len(requests):
                account_id, request = requests[position]
                position += 1
                started = clock()
                try:
                    if isinstance(request, trading_pb2.PlaceOrderRequest):
                        await stub.PlaceOrder(request, metadata=metadata[account_id])
                        kind = "place"
                    else:
                        await stub.CancelOrder(request, metadata=metadata[account_id])
                        kind = "cancel"
                except aio.AioRpcError:
                    rejected += 1
                    kind = "rejected"
                latencies[kind].append(clock() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(
        f"(a) unary, {concurrency} in flight: {rate:,.0f} calls/s "
        f"({count:,} calls, {rejected:,} rejected by name)"
    )
    for kind in ("place", "cancel", "rejected"):
        if latencies[kind]:
            print("    " + report(f"{kind:<8} ({len(latencies[kind]):,})", latencies[kind]))
    return rate


async def _batches(
    batches: Sequence[trading_pb2.StreamOrdersRequest], sent_ns: list[int]
) -> AsyncIterator[trading_pb2.StreamOrdersRequest]:
    for batch in batches:
        sent_ns.append(time.perf_counter_ns())
        yield batch


async def run_stream(address: str, seed: int, count: int, batch_size: int) -> float:
    per_account: dict[str, list[trading_pb2.OrderCommand]] = defaultdict(list)
    for account_id, request in generated(seed, count, "s"):
        if isinstance(request, trading_pb2.PlaceOrderRequest):
            per_account[account_id].append(trading_pb2.OrderCommand(place=request))
        else:
            per_account[account_id].append(trading_pb2.OrderCommand(cancel=request))
    streams = {
        account_id: [
            trading_pb2.StreamOrdersRequest(
                batch_id=str(start), commands=commands[start : start + batch_size]
            )
            for start in range(0, len(commands), batch_size)
        ]
        for account_id, commands in per_account.items()
    }
    round_trips: list[int] = []
    outcomes = {"accepted": 0, "rejected": 0}
    async with aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = trading_pb2_grpc.TradingServiceStub(channel)

        async def one_stream(
            account_id: str, batches: list[trading_pb2.StreamOrdersRequest]
        ) -> None:
            sent_ns: list[int] = []
            index = 0
            call = stub.StreamOrders(_batches(batches, sent_ns), metadata=trader(account_id))
            async for response in call:
                round_trips.append(time.perf_counter_ns() - sent_ns[index])
                index += 1
                for result in response.results:
                    outcomes["rejected" if result.HasField("error") else "accepted"] += 1

        started = time.perf_counter()
        await asyncio.gather(
            *(one_stream(account, batches) for account, batches in streams.items())
        )
        elapsed = time.perf_counter() - started
    acknowledged = outcomes["accepted"] + outcomes["rejected"]
    rate = acknowledged / elapsed
    print(
        f"(b) stream, {len(streams)} streams, batches of {batch_size:,}: {rate:,.0f} orders/s "
        f"({acknowledged:,} acknowledged: {outcomes['accepted']:,} accepted, "
        f"{outcomes['rejected']:,} rejected by name)"
    )
    print("    " + report(f"batch round trip ({len(round_trips):,})", round_trips))
    return rate


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"seed={args.seed} unary={args.unary_commands:,} stream={args.commands:,} "
        f"batches={args.batch} python={sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="core-grpc-bench-") as temp:
        with ServerProcess(Path(temp) / "unary", *SERVER_ARGUMENTS) as server:
            await prepare(server.address)
            unary_rate = await run_unary(
                server.address, args.seed, args.unary_commands, args.concurrency
            )
        stream_rates = []
        for batch_size in args.batch:
            with ServerProcess(Path(temp) / f"stream-{batch_size}", *SERVER_ARGUMENTS) as server:
                await prepare(server.address)
                stream_rates.append(
                    await run_stream(server.address, args.seed, args.commands, batch_size)
                )
    for batch_size, rate in zip(args.batch, stream_rates, strict=True):
        print(f"stream ({batch_size:,}) / unary: {rate / unary_rate:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--unary-commands", type=int, default=20_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1_000])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
