"""What the local exchange runs: every component, its port, how it starts and when it is ready.

`components(ports, var)` is the table of the exchange's services in start order (each depends
only on the ones before it; `down` stops them in reverse):
broker (infra/broker: our durable Kafka-API broker, segment logs under var/broker; ADR
0014) -> postgres -> redis -> core -> ledger
-> streaming (candles, tickers, history; Quix state and chdb under var/streaming) -> gateway
-> envoy. `demo_bot_components(ports, var)` are the demo bots, started after the exchange's
set-up (they sign with the demo keys it writes): market-maker (the SDK's
`exchange_sdk.demo.market_maker` as demo-maker, two post-only levels per side on BTC-USDT and
ETH-USDT, one round every 2 s) -> taker (`exchange_sdk.demo.taker` as demo-taker, one IOC
order every 2 s), both until stopped. The bots have accounts of their own: the README's
example users (demo-alice, demo-bob) are left to the examples.

Ports are fixed so that the endpoints printed are stable (`StackPorts`); each can be moved
with an environment variable (`PORT_VARIABLES`, read by `ports_from_environment`). Free ports
for tests and probes of a port are infra/local/ports.py; starting and stopping the processes
is infra/local/supervisor.py.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.envoy_config import EdgeParameters, Endpoint, render, write_edge_descriptor
from infra.local.envoy import envoy_binary, validate_config
from infra.local.postgres import POSTGRES_OS_USER, PostgresCluster, postgres_bin_directory
from infra.local.probes import grpc_serving, http_ok, kafka_answers, postgres_accepts
from infra.local.redis import answers_ping, redis_server_arguments
from infra.local.streaming import streaming_arguments, streaming_ready
from infra.local.supervisor import Component, process_alive, running_for

LEDGER_DATABASE: Final = "exchange_ledger"
LEDGER_LOGIN: Final = "ledger_app"
CORE_SHARD_ID: Final = "core-0"
LEDGER_SERVICE: Final = "exchange.ledger.v1.LedgerService"
DEMO_BOTS_VARIABLE: Final = "EXCHANGE_DEMO_BOTS"  # "0": `up` starts no demo bots
DEMO_SYMBOLS: Final = ("BTC-USDT", "ETH-USDT")
# Gentle on a small machine: the maker sends 2 markets x (cancel-all + 2 bids + 2 asks)
# every 2 s, the taker one IOC order every 2 s - about 3 orders/s in all.
DEMO_BOT_ROUNDS_PER_SECOND: Final = "0.5"
DEMO_MAKER_LEVELS: Final = "2"


@dataclass(frozen=True)
class StackPorts:
    """The loopback port of each component of the local exchange (`PORT_VARIABLES`)."""

    broker: int
    postgres: int
    redis: int
    core: int
    ledger: int
    streaming: int
    gateway_http: int
    gateway_grpc: int
    envoy: int
    envoy_admin: int


PORT_VARIABLES: Final = {
    "broker": ("EXCHANGE_BROKER_PORT", 19092),
    "postgres": ("EXCHANGE_POSTGRES_PORT", 15432),
    "redis": ("EXCHANGE_REDIS_PORT", 16379),
    "core": ("EXCHANGE_CORE_PORT", 50051),
    "ledger": ("EXCHANGE_LEDGER_PORT", 50052),
    "streaming": ("EXCHANGE_STREAMING_PORT", 50054),
    "gateway_grpc": ("EXCHANGE_GATEWAY_GRPC_PORT", 50053),
    "gateway_http": ("EXCHANGE_GATEWAY_HTTP_PORT", 8081),
    "envoy": ("EXCHANGE_ENVOY_PORT", 8080),
    "envoy_admin": ("EXCHANGE_ENVOY_ADMIN_PORT", 9901),
}


def ports_from_environment(environ: Mapping[str, str]) -> StackPorts:
    return StackPorts(
        **{
            name: int(environ.get(variable, str(default)))
            for name, (variable, default) in PORT_VARIABLES.items()
        }
    )


def _master_secret(var: Path) -> str:
    """The gateway's API-key master secret, made once and kept in var/gateway/ (0600)."""
    path = var / "gateway" / "api-key-master-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as output:
            output.write(secrets.token_hex(32))
    return path.read_text().strip()


def postgres_cluster(var: Path, ports: StackPorts) -> PostgresCluster:
    return PostgresCluster(directory=var / "postgres", port=ports.postgres)


def _prepare_postgres(cluster: PostgresCluster) -> None:
    """initdb the first time; after a crash, first wait until the old server's backends are
    gone (a new postmaster refuses to start beside them) and drop a stale lock file."""
    if cluster.data_directory.exists():
        cluster.wait_for_old_backends()
        # The data directory's lock, and the socket's beside it (-k: the cluster's directory).
        sockets = cluster.data_directory.parent.glob(".s.PGSQL.*.lock")
        for lock in [cluster.data_directory / "postmaster.pid", *sockets]:
            _remove_stale_lock(lock)
    cluster.initialize()


def _remove_stale_lock(lock: Path) -> None:
    """A killed postmaster that is not reaped yet (a zombie: its parent is init, which may
    reap it late) still answers kill(pid, 0), so PostgreSQL takes its lock files (the data
    directory's, the socket's) for a live server's and refuses to start. A lock is stale when
    its pid has exited."""
    try:
        pid = int(lock.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    if not process_alive(pid):
        lock.unlink(missing_ok=True)


def _prepare_ledger_database(cluster: PostgresCluster) -> None:
    """The ledger's database, migrated to head as the owner, and the service's login role
    (a member of `ledger_service` only), as the ledger's own tests set it up."""
    from ledger.db.migrate import SERVICE_ROLE, upgrade  # noqa: PLC0415 - alembic is slow to import

    if not cluster.database_exists(LEDGER_DATABASE):
        cluster.create_database(LEDGER_DATABASE)
    upgrade(cluster.url(LEDGER_DATABASE, driver="postgresql+psycopg"))
    cluster.ensure_login_role(LEDGER_LOGIN)
    cluster.execute_text(f"GRANT {SERVICE_ROLE} TO {LEDGER_LOGIN}")


def _edge_parameters(var: Path, ports: StackPorts) -> EdgeParameters:
    return EdgeParameters(
        listener_port=ports.envoy,
        admin_port=ports.envoy_admin,
        core=Endpoint("127.0.0.1", ports.core),
        ledger=Endpoint("127.0.0.1", ports.ledger),
        gateway_grpc=Endpoint("127.0.0.1", ports.gateway_grpc),
        gateway_http=Endpoint("127.0.0.1", ports.gateway_http),
        descriptor_path=str(var / "envoy" / "edge.binpb"),
        access_log_path=str(var / "log" / "envoy-access.log"),
    )


def _render_envoy_config(var: Path, ports: StackPorts) -> None:
    """Write var/envoy/edge.binpb and envoy.json for the stack's ports; validate them."""
    directory = var / "envoy"
    directory.mkdir(parents=True, exist_ok=True)
    write_edge_descriptor(directory / "edge.binpb")
    config_path = directory / "envoy.json"
    config_path.write_text(json.dumps(render(_edge_parameters(var, ports)), indent=2))
    validation = validate_config(config_path)
    if validation.returncode != 0:
        message = f"envoy rejects {config_path}: {validation.stdout}{validation.stderr}"
        raise SystemExit(message)


def components(ports: StackPorts, var: Path) -> list[Component]:
    """Every component, in start order (stopped in reverse)."""
    broker_url = f"127.0.0.1:{ports.broker}"
    postgres = postgres_cluster(var, ports)
    python = sys.executable
    return [
        Component(
            name="broker",
            argv=[
                python,
                "-m",
                "infra.broker",
                "--data-dir",
                str(var / "broker"),
                "--port",
                str(ports.broker),
            ],
            port=ports.broker,
            ready=lambda: kafka_answers(broker_url),
            ready_timeout_seconds=60.0,  # start-up reads each partition's segment index
        ),
        Component(
            name="postgres",
            argv=[
                str(postgres_bin_directory() / "postgres"),
                "-D",
                str(postgres.data_directory),
                *(part for option in postgres.server_options() for part in option.split(" ", 1)),
            ],
            port=ports.postgres,
            ready=lambda: postgres_accepts(ports.postgres),
            prepare=lambda: _prepare_postgres(postgres),
            configure=lambda: _prepare_ledger_database(postgres),
            user=POSTGRES_OS_USER if os.geteuid() == 0 else None,
            stop_signal=signal.SIGINT,  # fast shutdown: clients are disconnected
        ),
        Component(
            name="redis",
            argv=redis_server_arguments(port=ports.redis, directory=var / "redis"),
            port=ports.redis,
            ready=lambda: answers_ping(ports.redis),
        ),
        Component(
            name="core",
            argv=[
                python,
                "-m",
                "core.service",
                "--data-dir",
                str(var / "core"),
                "--listen",
                f"127.0.0.1:{ports.core}",
                "--shard-id",
                CORE_SHARD_ID,
                "--broker",
                f"127.0.0.1:{ports.broker}",
            ],
            port=ports.core,
            ready=lambda: grpc_serving(f"127.0.0.1:{ports.core}"),
            event_path=f"127.0.0.1:{ports.core}",
            ready_timeout_seconds=120.0,  # recovery replays the WAL tail first
        ),
        Component(
            name="ledger",
            argv=[
                python,
                "-m",
                "ledger.service",
                "--database-url",
                postgres.url(LEDGER_DATABASE, user=LEDGER_LOGIN, driver="postgresql+psycopg"),
                "--listen",
                f"127.0.0.1:{ports.ledger}",
                "--core-address",
                f"127.0.0.1:{ports.core}",
                "--shard-id",
                CORE_SHARD_ID,
                "--kafka-bootstrap",
                f"127.0.0.1:{ports.broker}",
                "--partitions",
                "0",
            ],
            port=ports.ledger,
            ready=lambda: grpc_serving(f"127.0.0.1:{ports.ledger}", LEDGER_SERVICE),
            event_path=f"127.0.0.1:{ports.ledger}",
        ),
        Component(
            name="streaming",
            argv=streaming_arguments(
                broker=f"127.0.0.1:{ports.broker}",
                redis_url=f"redis://127.0.0.1:{ports.redis}/0",
                data_directory=var / "streaming",
                listen=f"127.0.0.1:{ports.streaming}",
            ),
            port=ports.streaming,
            ready=lambda: streaming_ready(f"127.0.0.1:{ports.streaming}"),
            event_path=f"127.0.0.1:{ports.streaming}",
            ready_timeout_seconds=60.0,
        ),
        Component(
            name="gateway",
            argv=[python, "-m", "gateway"],
            port=ports.gateway_grpc,
            ready=lambda: (
                grpc_serving(f"127.0.0.1:{ports.gateway_grpc}")
                and http_ok(f"http://127.0.0.1:{ports.gateway_http}/healthz")
            ),
            event_path=f"127.0.0.1:{ports.gateway_grpc}",
            environment=lambda: {
                "EDGE_REDIS_URL": f"redis://127.0.0.1:{ports.redis}/0",
                "EDGE_HTTP_PORT": str(ports.gateway_http),
                "EDGE_GRPC_PORT": str(ports.gateway_grpc),
                "EDGE_API_KEY_MASTER_SECRET": _master_secret(var),
                # Market data and the WebSocket channels from the core's event log.
                "EDGE_BROKER": f"127.0.0.1:{ports.broker}",
                # The projection starts from the core's snapshot (docs/adr/0017).
                "EDGE_CORE_ADDRESS": f"127.0.0.1:{ports.core}",
                # Where the gateway forwards ListCandles / ListTrades (the streaming process).
                "EDGE_MARKET_HISTORY_ADDRESS": f"127.0.0.1:{ports.streaming}",
            },
        ),
        Component(
            name="envoy",
            argv=[
                python,
                "-m",
                "infra.local.resident_parent",  # Envoy stops when its parent exits
                envoy_binary(),
                "-c",
                str(var / "envoy" / "envoy.json"),
                "--use-dynamic-base-id",
                "--log-level",
                "warning",
                "--concurrency",
                "2",
            ],
            port=ports.envoy,
            ready=lambda: http_ok(f"http://127.0.0.1:{ports.envoy}/readyz"),
            prepare=lambda: _render_envoy_config(var, ports),
        ),
    ]


def _public_json(url: str, timeout_seconds: float) -> dict[str, Any] | None:
    """A public GET through Envoy as JSON, or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # noqa: S310 - loopback http
            document: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return document


def book_quoted(edge_url: str, symbol: str, *, timeout_seconds: float = 1.0) -> bool:
    """The public order book of `symbol` (REST through Envoy) has bids and asks."""
    document = _public_json(f"{edge_url}/v1/markets/{symbol}/orderbook", timeout_seconds) or {}
    book = document.get("book", {})
    return bool(book.get("bids")) and bool(book.get("asks"))


def markets_listed(edge_url: str, symbols: Sequence[str], *, timeout_seconds: float = 1.0) -> bool:
    """The edge's market data lists `symbols` (`GET /v1/markets`). The gateway projects the
    markets from the event log after it starts, so they may come a moment after it is healthy."""
    document = _public_json(f"{edge_url}/v1/markets", timeout_seconds) or {}
    listed = {market.get("symbol") for market in document.get("markets", [])}
    return listed.issuperset(symbols)


def demo_bot_components(ports: StackPorts, var: Path) -> list[Component]:
    """The SDK's demo bots, signing with the keys of var/demo-keys.json, running until stopped
    (`--duration 0`); started after the exchange's set-up, in this order."""
    edge_url = f"http://127.0.0.1:{ports.envoy}"
    common = [
        "--endpoint",
        f"127.0.0.1:{ports.envoy}",
        "--keys-file",
        str(var / "demo-keys.json"),
        "--symbols",
        *DEMO_SYMBOLS,
        "--duration",
        "0",
        "--rate",
        DEMO_BOT_ROUNDS_PER_SECOND,
    ]
    bot_argv = [sys.executable, "-m"]
    return [
        Component(
            name="market-maker",
            argv=[
                *bot_argv,
                "exchange_sdk.demo.market_maker",
                *common,
                "--key-name",
                "demo-maker",
                "--levels",
                DEMO_MAKER_LEVELS,
            ],
            port=None,
            ready=lambda: all(book_quoted(edge_url, symbol) for symbol in DEMO_SYMBOLS),
            healthy=lambda: True,  # a client: running is all it can say
        ),
        Component(
            name="taker",
            argv=[*bot_argv, "exchange_sdk.demo.taker", *common, "--key-name", "demo-taker"],
            port=None,
            ready=running_for(2.0),
            healthy=lambda: True,
        ),
    ]
