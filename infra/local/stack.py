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

The components, their ports and their start order are infra/local/components.py (broker ->
postgres -> redis -> core -> ledger -> streaming -> gateway -> envoy; then the set-up; then
the demo bots, so the book, trades and WebSocket streams are alive); starting, checking and
stopping a detached process is infra/local/supervisor.py. `up --no-bots` (or
EXCHANGE_DEMO_BOTS=0) leaves the bots out - for a quiet market, as the tests that count
balances need; bots already running are left alone either way. `down` stops the bots first.

Everything durable lives under var/ and survives `down` + `up`: the broker's topics (segment
files in var/broker, fsynced before each ack, so the ledger's stored offsets never point
past an empty topic), the
PostgreSQL cluster (ledger), Redis's append-only file (API keys, replay marks, idempotency
bindings), the core's WAL and snapshots, the gateway's master secret (so created keys'
secrets stay valid) and the demo keys. Reset = `down`, then delete var/.

Ports are fixed so that the endpoints printed are stable; each can be moved with an
environment variable (`PORT_VARIABLES` in infra/local/components.py).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.local.components import (
    DEMO_BOTS_VARIABLE,
    DEMO_SYMBOLS,
    LEDGER_DATABASE,
    StackPorts,
    components,
    demo_bot_components,
    markets_listed,
    ports_from_environment,
    postgres_cluster,
)
from infra.local.demo_accounts import demo_keys, fund_demo_accounts, smoke_order
from infra.local.edge_client import ApiKey
from infra.local.reference_data import list_reference_data
from infra.local.supervisor import REPO_ROOT, Component, Supervisor


def demo_bots_wanted(environ: Mapping[str, str]) -> bool:
    return environ.get(DEMO_BOTS_VARIABLE, "1").strip().lower() not in {"0", "false", "no", "off"}


class Stack:
    """The local exchange under `var`: its components and demo bots, and their processes."""

    def __init__(self, var: Path, ports: StackPorts) -> None:
        self.var = var
        self.ports = ports
        self.components = components(ports, var)
        self.bots = demo_bot_components(ports, var)
        self.processes = Supervisor(var)

    @property
    def keys_file(self) -> Path:
        return self.var / "demo-keys.json"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.envoy}"

    def pid(self, component: Component) -> int | None:
        return self.processes.pid(component)

    def up(self) -> bool:
        """Start what does not run and configure everything; True when something started."""
        started = False
        for component in self.components:
            started = self.processes.start(component) or started
            if component.configure is not None:
                component.configure()
        return started

    def start_bots(self, *, markets_timeout_seconds: float = 30.0) -> None:
        """Start the demo bots that do not run (after `set_up_exchange`: they need its keys,
        and the markets in the edge's market data, which they look up first)."""
        if all(self.pid(bot) is not None for bot in self.bots):
            for bot in self.bots:
                self.processes.start(bot)  # prints that it runs already
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
            self.processes.start(bot)

    def down(self) -> None:
        """Stop the bots first (the market maker cancels its quotes), then the services."""
        for component in reversed([*self.components, *self.bots]):
            self.processes.stop(component)

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
                problem = self.processes.health_problem(component)
                healthy = problem is None
                health = "healthy" if problem is None else f"unhealthy: {problem}"
                state = f"running (pid {pid}{where}), {health}"
                where = ""
            all_healthy = all_healthy and healthy
            print(f"{component.name}: {state}{where}")
        return all_healthy

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
    postgres = postgres_cluster(stack.var, ports)
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
