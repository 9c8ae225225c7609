"""How long a restarted gateway takes until its market-data projection serves the core's
state, after a short and after a long history, in the same run (docs/adr/0017): the real
core, the broker and the gateway as processes; the history is random trading straight on the
core (tests/support/projection_traffic.py).

For each history size, the gateway is started `--repeats` times from its snapshot
(EDGE_CORE_ADDRESS set) and, for comparison, from the whole log (no core address: the
replay the gateway did before the snapshot). Ready = the gateway's `/internal/market-data/state`
equals the core's books, balances and resting orders (polled every 5 ms), timed from the
process's start; "projection" is the part after its HTTP port answers. Prints the medians
and the long/short ratios: with the snapshot the ratio must stay near 1 (start-up does not
grow with history), the replay's grows with it.

    .venv/bin/python bench/projection_restart_bench.py --small 1000 --large 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from grpc import aio

from core.service.testing import ServerProcess, operator
from infra.local.kafka_broker import LocalBroker
from infra.local.ports import wait_for_port
from infra.local.redis import RedisServer
from tests.integration.edge.harness import GatewayProcess
from tests.support.projection_traffic import (
    Traders,
    comparable,
    core_view,
    gateway_market_data,
    setup_market,
)

POLL_SECONDS = 0.005
READY_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Start:
    total_seconds: float
    projection_seconds: float
    records: int


def timed_start(
    redis_url: str, environment: dict[str, str], expected: dict[str, Any], log: Path
) -> Start:
    with log.open("ab") as output:
        gateway = GatewayProcess(redis_url=redis_url, log=output, environment=environment)
        started = time.monotonic()
        gateway.start()  # returns once both ports answer
        listening = time.monotonic()
        try:
            wait_for_port(gateway.http_port, timeout_seconds=30)
            deadline = started + READY_TIMEOUT_SECONDS
            while comparable(gateway_market_data(gateway.http_port, "/state")) != expected:
                if time.monotonic() > deadline:
                    message = "the gateway never matched the core"
                    raise TimeoutError(message)
                time.sleep(POLL_SECONDS)
            ready = time.monotonic()
            records = int(gateway_market_data(gateway.http_port)["records"])
        finally:
            gateway.stop()
    return Start(ready - started, ready - listening, records)


async def expected_state(core_address: str) -> dict[str, Any]:
    async with aio.insecure_channel(core_address) as channel:
        view = await core_view(channel)
    view.pop("engine_seq")
    return view


async def events_in_log(channel: aio.Channel) -> int:
    """Every core event is in exactly one stream: the markets' seqs plus the account
    stream's seq count the events the core has published (or will)."""
    admin: core_admin_pb2_grpc.CoreAdminServiceAsyncStub = core_admin_pb2_grpc.CoreAdminServiceStub(
        channel
    )
    snapshot = await admin.GetProjectionSnapshot(
        core_admin_pb2.GetProjectionSnapshotRequest(), metadata=operator()
    )
    return snapshot.account_stream_seq + sum(market.seq for market in snapshot.markets)


async def grow_history(core_address: str, traders: Traders, events: int) -> int:
    """Trades until the core's event log holds at least `events` events; returns the count."""
    async with aio.insecure_channel(core_address) as channel:
        while (now := await events_in_log(channel)) < events:
            await traders.run(channel, max(50, (events - now) // 2))
        return now


def measure(
    label: str, redis_url: str, env: dict[str, str], core: str, repeats: int, log: Path
) -> dict[str, Start]:
    expected = asyncio.run(expected_state(core))
    results: dict[str, Start] = {}
    for mode, environment in (
        ("snapshot", {**env, "EDGE_CORE_ADDRESS": core}),
        ("replay", env),
    ):
        starts = [timed_start(redis_url, environment, expected, log) for _ in range(repeats)]
        median = Start(
            statistics.median(s.total_seconds for s in starts),
            statistics.median(s.projection_seconds for s in starts),
            max(s.records for s in starts),
        )
        results[mode] = median
        print(
            f"{label:>6} history, {mode:>8}: ready {median.total_seconds:6.3f} s after start, "
            f"projection {median.projection_seconds:6.3f} s, {median.records} records read "
            f"(median of {repeats})",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1_000, help="events of the short history")
    parser.add_argument("--large", type=int, default=20_000, help="events of the long history")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--max-ratio", type=float, default=1.5, help="exit 1 above this snapshot ratio"
    )
    arguments = parser.parse_args()
    traders = Traders(seed=arguments.seed)
    with (
        tempfile.TemporaryDirectory(prefix="projection-bench-") as directory,
        LocalBroker() as broker,
        ServerProcess(Path(directory) / "core", "--broker", broker.bootstrap_servers) as core,
        RedisServer() as redis,
    ):
        log = Path(directory) / "gateway.log"
        env = {"EDGE_BROKER": broker.bootstrap_servers}

        asyncio.run(setup_market(core.address))
        events = asyncio.run(grow_history(core.address, traders, arguments.small))
        print(f"short history: {events} events", flush=True)
        small = measure("short", redis.url, env, core.address, arguments.repeats, log)
        events = asyncio.run(grow_history(core.address, traders, arguments.large))
        print(f"long history: {events} events", flush=True)
        large = measure("long", redis.url, env, core.address, arguments.repeats, log)
    history_ratio = large["replay"].records / max(1, small["replay"].records)
    print(
        f"history: {small['replay'].records} -> {large['replay'].records} events "
        f"({history_ratio:.1f}x)"
    )
    worst = 0.0
    for mode in ("snapshot", "replay"):
        total = large[mode].total_seconds / small[mode].total_seconds
        projection = large[mode].projection_seconds / max(small[mode].projection_seconds, 1e-3)
        print(f"{mode:>8}: long/short ready ratio {total:.2f}, projection part {projection:.2f}")
        if mode == "snapshot":
            worst = total
    sys.exit(0 if worst <= arguments.max_ratio else 1)


if __name__ == "__main__":
    main()
