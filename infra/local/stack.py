"""The local exchange: start, check and stop every component on loopback.

`python -m infra.local.stack up` (what `infra/up.sh` runs) starts each component that is not
already running as a detached process (its own session, so it outlives this command), with
its data under `var/<component>/`, its log in `var/log/<component>.log` and its pid in
`var/run/<component>.pid`; waits until each is healthy (its own health check where it has
one, else its port); then runs the idempotent set-up (assets, markets, funded demo accounts
with API keys), places a signed smoke order through Envoy when something was started, and
prints the endpoints and keys. `down` stops them in reverse order (SIGTERM, SIGINT for
PostgreSQL's fast shutdown; SIGKILL after a grace period); `smoke` places the smoke order
again. `status` prints each component as stopped, or running and healthy / unhealthy (with
the reason): its readiness check (the broker must answer a metadata request, not only
accept connections) and, for core, ledger, streaming and gateway, their event path's
`grpc.health.v1` status (common/event_path_health.py: a publisher or consumer failing for
longer than EXCHANGE_EVENT_PATH_BOUND_SECONDS, default 30 s, is NOT_SERVING; the reason is
the last `event path unhealthy:` line of its log). It exits 1 when a service is stopped or
unhealthy (the bots are optional). Running `up` twice is safe: what runs is left alone.

Start order (each depends only on the ones before it):
broker (infra/broker: our durable Kafka-API broker, segment logs under var/broker; ADR
0014) -> postgres -> redis -> core -> ledger
-> streaming (candles, tickers, history; Quix state and chdb under var/streaming) -> gateway
-> envoy; then the set-up; then the demo bots (they sign with the demo keys the
set-up writes): market-maker (the SDK's `exchange_sdk.demo.market_maker` as demo-maker,
two post-only levels per side on BTC-USDT and ETH-USDT, one round every 2 s) -> taker
(`exchange_sdk.demo.taker` as demo-taker, one IOC order every 2 s), both until stopped, so
the book, trades and WebSocket streams are alive. The bots have accounts of their own: the
README's example users (demo-alice, demo-bob) are left to the examples. `up --no-bots` (or
EXCHANGE_DEMO_BOTS=0) leaves them out - for a quiet market, as the tests that count balances
need; bots already running are left alone either way. `down` stops the bots first.

Everything durable lives under var/ and survives `down` + `up`: the broker's topics (segment
files in var/broker, fsynced before each ack, so the ledger's stored offsets never point
past an empty topic), the
PostgreSQL cluster (ledger), Redis's append-only file (API keys, replay marks, idempotency
bindings), the core's WAL and snapshots, the gateway's master secret (so created keys'
secrets stay valid) and the demo keys. Reset = `down`, then delete var/.

Ports are fixed so that the endpoints printed are stable; each can be moved with an
environment variable (see `ports_from_environment`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from common.event_path_health import EVENT_PATH_SERVICE, UNHEALTHY_PREFIX
from gateway.envoy_config import EdgeParameters, Endpoint, render, write_edge_descriptor
from infra.local.demo_accounts import demo_keys, fund_demo_accounts, smoke_order
from infra.local.edge_client import ApiKey
from infra.local.envoy import envoy_binary, validate_config
from infra.local.postgres import POSTGRES_OS_USER, PostgresCluster, postgres_bin_directory
from infra.local.probes import (
    grpc_health_status,
    grpc_serving,
    http_ok,
    kafka_answers,
    postgres_accepts,
)
from infra.local.redis import answers_ping, redis_server_arguments
from infra.local.reference_data import list_reference_data
from infra.local.streaming import streaming_arguments, streaming_ready

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
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
class Ports:
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


def ports_from_environment(environ: Mapping[str, str]) -> Ports:
    return Ports(
        **{
            name: int(environ.get(variable, str(default)))
            for name, (variable, default) in PORT_VARIABLES.items()
        }
    )


@dataclass(frozen=True)
class Component:
    """One long-running process of the stack, and how to tell it is ready.

    `prepare` runs before the process starts (initdb, rendering a config); `environment`
    is computed then too. `ready` is polled until it answers True; `configure` runs after
    every `up`, whether the process was started or already ran (idempotent set-up such as
    migrations)."""

    name: str
    argv: list[str]
    port: int | None  # None: a client (the demo bots), it serves no port
    ready: Callable[[], bool]
    environment: Callable[[], dict[str, str]] = dict
    prepare: Callable[[], None] | None = None
    configure: Callable[[], None] | None = None
    user: str | None = None  # the OS user to run as (PostgreSQL refuses root)
    stop_signal: signal.Signals = signal.SIGTERM
    ready_timeout_seconds: float = 30.0
    # `status`: True while it serves (None: `ready`), and the gRPC address whose
    # EVENT_PATH_SERVICE health reports its event path (None: it has none).
    healthy: Callable[[], bool] | None = None
    event_path: str | None = None


def _master_secret(var: Path) -> str:
    """The gateway's API-key master secret, made once and kept in var/gateway/ (0600)."""
    path = var / "gateway" / "api-key-master-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as output:
            output.write(secrets.token_hex(32))
    return path.read_text().strip()


def _postgres_cluster(var: Path, ports: Ports) -> PostgresCluster:
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


def _edge_parameters(var: Path, ports: Ports) -> EdgeParameters:
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


def _render_envoy_config(var: Path, ports: Ports) -> None:
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


def components(ports: Ports, var: Path) -> list[Component]:
    """Every component, in start order (stopped in reverse)."""
    broker_url = f"127.0.0.1:{ports.broker}"
    postgres = _postgres_cluster(var, ports)
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


def running_for(seconds: float) -> Callable[[], bool]:
    """A readiness check for a process with nothing to probe: True once `seconds` have passed
    since its first call (`Stack.start` fails meanwhile if the process exits)."""
    first_call_at: list[float] = []

    def ready() -> bool:
        now = time.monotonic()
        if not first_call_at:
            first_call_at.append(now)
        return now - first_call_at[0] >= seconds

    return ready


def demo_bot_components(ports: Ports, var: Path) -> list[Component]:
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


def last_line_with(path: Path, text: str, *, tail_bytes: int = 256 * 1024) -> str | None:
    """The last line of the file's tail that contains `text`, or None."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - tail_bytes))
            tail = log.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    found = [line for line in tail.splitlines() if text in line]
    return found[-1] if found else None


def demo_bots_wanted(environ: Mapping[str, str]) -> bool:
    return environ.get(DEMO_BOTS_VARIABLE, "1").strip().lower() not in {"0", "false", "no", "off"}


def process_alive(pid: int) -> bool:
    """The process exists and has not exited. A detached component's parent is init, which
    may reap it late: an exited process that is not reaped yet (a zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]  # the field after "(command name)"
    return state != "Z"


class Stack:
    def __init__(self, var: Path, ports: Ports) -> None:
        self.var = var
        self.ports = ports
        self.components = components(ports, var)
        self.bots = demo_bot_components(ports, var)

    @property
    def keys_file(self) -> Path:
        return self.var / "demo-keys.json"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.envoy}"

    def _pid_file(self, component: Component) -> Path:
        return self.var / "run" / f"{component.name}.pid"

    def pid(self, component: Component) -> int | None:
        """The pid of the component's running process, or None (stale pid files are removed)."""
        path = self._pid_file(component)
        try:
            pid = int(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not process_alive(pid):
            path.unlink(missing_ok=True)
            return None
        return pid

    def start(self, component: Component) -> bool:
        """Start the component unless it runs; True when it was started."""
        if self.pid(component) is not None:
            print(f"{component.name}: already running")
            return False
        (self.var / "run").mkdir(parents=True, exist_ok=True)
        (self.var / "log").mkdir(parents=True, exist_ok=True)
        if component.prepare is not None:
            component.prepare()
        log_path = self.var / "log" / f"{component.name}.log"
        started_at = time.monotonic()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                component.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **component.environment()},
                start_new_session=True,
                user=component.user,
                group=component.user,
                extra_groups=None if component.user is None else [],
            )
        self._pid_file(component).write_text(str(process.pid))
        deadline = started_at + component.ready_timeout_seconds
        while not component.ready():
            code = process.poll()
            if code is not None or time.monotonic() > deadline:
                state = "still starting" if code is None else f"exited with {code}"
                message = f"{component.name} is not ready ({state}); see {log_path}"
                raise SystemExit(message)
            time.sleep(0.05)
        elapsed = time.monotonic() - started_at
        where = "" if component.port is None else f", port {component.port}"
        print(f"{component.name}: started (pid {process.pid}{where}, ready in {elapsed:.1f}s)")
        return True

    def stop(self, component: Component, *, grace_seconds: float = 20.0) -> None:
        pid = self.pid(component)
        if pid is None:
            return
        os.kill(pid, component.stop_signal)
        signalled_at = time.monotonic()
        deadline = signalled_at + grace_seconds
        while time.monotonic() < deadline:
            if not process_alive(pid):
                break
            time.sleep(0.05)
        else:
            os.killpg(pid, signal.SIGKILL)  # its own session: the children go too
        self._pid_file(component).unlink(missing_ok=True)
        print(f"{component.name}: stopped in {time.monotonic() - signalled_at:.1f}s")

    def up(self) -> bool:
        """Start what does not run and configure everything; True when something started."""
        started = False
        for component in self.components:
            started = self.start(component) or started
            if component.configure is not None:
                component.configure()
        return started

    def start_bots(self, *, markets_timeout_seconds: float = 30.0) -> None:
        """Start the demo bots that do not run (after `set_up_exchange`: they need its keys,
        and the markets in the edge's market data, which they look up first)."""
        if all(self.pid(bot) is not None for bot in self.bots):
            for bot in self.bots:
                self.start(bot)  # prints that it runs already
            return
        deadline = time.monotonic() + markets_timeout_seconds
        while not markets_listed(self.edge_url, DEMO_SYMBOLS):
            if time.monotonic() > deadline:
                message = (
                    f"the edge does not list {', '.join(DEMO_SYMBOLS)}; see var/log/gateway.log"
                )
                raise SystemExit(message)
            time.sleep(0.1)
        for bot in self.bots:
            self.start(bot)

    def down(self) -> None:
        """Stop the bots first (the market maker cancels its quotes), then the services."""
        for component in reversed([*self.components, *self.bots]):
            self.stop(component)

    def status(self) -> bool:
        """Print each component's state and health; True when every service runs and is
        healthy (the bots are optional)."""
        all_healthy = True
        bot_names = {bot.name for bot in self.bots}
        for component in [*self.components, *self.bots]:
            pid = self.pid(component)
            where = "" if component.port is None else f", port {component.port}"
            if pid is None:
                state = "stopped"
                healthy = component.name in bot_names
            else:
                problem = self.health_problem(component)
                healthy = problem is None
                health = "healthy" if problem is None else f"unhealthy: {problem}"
                state = f"running (pid {pid}{where}), {health}"
                where = ""
            all_healthy = all_healthy and healthy
            print(f"{component.name}: {state}{where}")
        return all_healthy

    def health_problem(self, component: Component) -> str | None:
        """Why a running component is unhealthy, or None when it is healthy."""
        check = component.healthy or component.ready
        if not check():
            return "it does not answer its health check"
        if component.event_path is None:
            return None
        status = grpc_health_status(component.event_path, EVENT_PATH_SERVICE)
        if status == "SERVING":
            return None
        logged = last_line_with(self.var / "log" / f"{component.name}.log", UNHEALTHY_PREFIX)
        reason = logged.split(UNHEALTHY_PREFIX, 1)[1] if logged else "no reason logged"
        return f"event path {status or 'unanswered'} ({reason})"

    def set_up_exchange(self) -> dict[str, ApiKey]:
        """Reference data, funded demo accounts and their keys (idempotent)."""
        symbols = list_reference_data(f"127.0.0.1:{self.ports.core}")
        print(f"markets: {', '.join(symbols)}")
        fund_demo_accounts(f"127.0.0.1:{self.ports.core}")
        return demo_keys(f"127.0.0.1:{self.ports.gateway_grpc}", self.keys_file)

    def smoke(self, keys: Mapping[str, ApiKey]) -> None:
        account = next(name for name in keys if name.startswith("demo-"))
        status = smoke_order(self.edge_url, keys[account])
        print(f"smoke: a signed REST order through Envoy for {account} was accepted ({status})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status", "smoke"])
    parser.add_argument(
        "--var",
        type=Path,
        default=Path(os.environ.get("EXCHANGE_VAR_DIR", REPO_ROOT / "var")),
        help="where data, logs and pid files live (default: var/ in the repository)",
    )
    parser.add_argument(
        "--no-bots",
        dest="bots",
        action="store_false",
        default=demo_bots_wanted(os.environ),
        help=f"up: do not start the demo bots (also {DEMO_BOTS_VARIABLE}=0)",
    )
    args = parser.parse_args(argv)
    stack = Stack(args.var.resolve(), ports_from_environment(os.environ))
    if args.action == "up":
        started_at = time.monotonic()
        started = stack.up()
        keys = stack.set_up_exchange()
        if started:
            stack.smoke(keys)
        if args.bots:
            stack.start_bots()
        print_endpoints(stack, keys)
        print(f"up in {time.monotonic() - started_at:.1f}s")
    elif args.action == "smoke":
        stack.smoke(stack.set_up_exchange())
    elif args.action == "down":
        stack.down()
    elif not stack.status():
        raise SystemExit(1)


def print_endpoints(stack: Stack, keys: Mapping[str, ApiKey]) -> None:
    ports = stack.ports
    postgres = _postgres_cluster(stack.var, ports)
    lines = [
        "",
        "The exchange runs on loopback:",
        f"  REST + gRPC (signed, through Envoy): {stack.edge_url}  (gRPC: 127.0.0.1:{ports.envoy})",
        f"  WebSocket market data:               ws://127.0.0.1:{ports.envoy}/ws",
        f"  Envoy admin:                         http://127.0.0.1:{ports.envoy_admin}",
        f"  core gRPC (operators, direct):       127.0.0.1:{ports.core}",
        f"  ledger gRPC (operators, direct):     127.0.0.1:{ports.ledger}",
        f"  market history gRPC (streaming):     127.0.0.1:{ports.streaming}",
        f"  gateway ApiKeyService (direct):      127.0.0.1:{ports.gateway_grpc}",
        f"  Kafka-API broker:                    127.0.0.1:{ports.broker}",
        f"  PostgreSQL (ledger):                 {postgres.url(LEDGER_DATABASE)}",
        f"  Redis:                               redis://127.0.0.1:{ports.redis}/0",
        "Demo API keys (also in " + str(stack.keys_file) + "):",
    ]
    lines += [
        f"  {name:<10} account {key.account_id:<12} key {key.key_id}  secret {key.secret}"
        for name, key in keys.items()
    ]
    running_bots = [bot.name for bot in stack.bots if stack.pid(bot) is not None]
    if running_bots:
        lines.append(
            f"Demo bots running: {', '.join(running_bots)} (market maker as demo-maker, "
            f"taker as demo-taker, on {', '.join(DEMO_SYMBOLS)}; logs in {stack.var / 'log'})"
        )
    else:
        lines.append(f"Demo bots: off (`up` starts them unless --no-bots/{DEMO_BOTS_VARIABLE}=0)")
    lines += [f"Data and logs: {stack.var}", "Stop it with: bash infra/down.sh"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
