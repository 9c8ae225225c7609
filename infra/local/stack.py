"""The local exchange: start, check and stop every component on loopback.

`python -m infra.local.stack up` (what `infra/up.sh` runs) starts each component that is not
already running as a detached process (its own session, so it outlives this command), with
its data under `var/<component>/`, its log in `var/log/<component>.log` and its pid in
`var/run/<component>.pid`; waits until each answers; then runs the idempotent set-up
(assets, markets) and prints the endpoints. `down` stops them in reverse order (SIGTERM,
then SIGKILL after a grace period); `status` prints what runs. Running `up` twice is safe:
what runs is left alone, and data survives `down` + `up`.

Ports are fixed so that the endpoints printed are stable; each can be moved with an
environment variable (see `_ports`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from infra.local.kafka_broker import TANSU_BINARY
from infra.local.ports import wait_for_port
from infra.local.reference_data import list_reference_data

REPO_ROOT: Final = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ports:
    broker: int
    core: int


def _ports(environ: dict[str, str]) -> Ports:
    return Ports(
        broker=int(environ.get("EXCHANGE_BROKER_PORT", "19092")),
        core=int(environ.get("EXCHANGE_CORE_PORT", "50051")),
    )


@dataclass(frozen=True)
class Component:
    """One long-running process of the stack, and how to tell it is ready."""

    name: str
    argv: Callable[[Path], list[str]]  # given the var/ directory
    port: int
    environment: dict[str, str] = field(default_factory=dict)
    ready_timeout_seconds: float = 30.0


def components(ports: Ports) -> list[Component]:
    """Every component, in start order (stopped in reverse)."""
    broker_url = f"tcp://127.0.0.1:{ports.broker}"
    return [
        Component(
            name="broker",
            argv=lambda _var: [
                str(TANSU_BINARY),
                "broker",
                "--listener-url",
                broker_url,
                "--advertised-listener-url",
                broker_url,
                "--storage-engine",
                "memory://tansu/",
            ],
            port=ports.broker,
        ),
        Component(
            name="core",
            argv=lambda var: [
                sys.executable,
                "-m",
                "core.service",
                "--data-dir",
                str(var / "core"),
                "--listen",
                f"127.0.0.1:{ports.core}",
                "--broker",
                f"127.0.0.1:{ports.broker}",
            ],
            port=ports.core,
            ready_timeout_seconds=120.0,  # recovery replays the WAL tail first
        ),
    ]


class Stack:
    def __init__(self, var: Path, ports: Ports) -> None:
        self.var = var
        self.ports = ports
        self.components = components(ports)

    def _pid_file(self, component: Component) -> Path:
        return self.var / "run" / f"{component.name}.pid"

    def pid(self, component: Component) -> int | None:
        """The pid of the component's running process, or None (stale pid files are removed)."""
        path = self._pid_file(component)
        try:
            pid = int(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            return None
        return pid

    def start(self, component: Component) -> None:
        if self.pid(component) is not None:
            print(f"{component.name}: already running")
            return
        (self.var / "run").mkdir(parents=True, exist_ok=True)
        (self.var / "log").mkdir(parents=True, exist_ok=True)
        log_path = self.var / "log" / f"{component.name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                component.argv(self.var),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **component.environment},
                start_new_session=True,
            )
        self._pid_file(component).write_text(str(process.pid))
        try:
            wait_for_port(component.port, timeout_seconds=component.ready_timeout_seconds)
        except TimeoutError:
            code = process.poll()
            state = "still starting" if code is None else f"exited with {code}"
            message = f"{component.name} is not ready ({state}); see {log_path}"
            raise SystemExit(message) from None
        print(f"{component.name}: started (pid {process.pid}, port {component.port})")

    def stop(self, component: Component, *, grace_seconds: float = 20.0) -> None:
        pid = self.pid(component)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        self._pid_file(component).unlink(missing_ok=True)
        print(f"{component.name}: stopped")

    def up(self) -> None:
        for component in self.components:
            self.start(component)

    def down(self) -> None:
        for component in reversed(self.components):
            self.stop(component)

    def status(self) -> bool:
        """Print each component's state; True when all run."""
        all_running = True
        for component in self.components:
            pid = self.pid(component)
            all_running = all_running and pid is not None
            state = f"running (pid {pid})" if pid is not None else "stopped"
            print(f"{component.name}: {state}, port {component.port}")
        return all_running


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--var",
        type=Path,
        default=Path(os.environ.get("EXCHANGE_VAR_DIR", REPO_ROOT / "var")),
        help="where data, logs and pid files live (default: var/ in the repository)",
    )
    args = parser.parse_args(argv)
    stack = Stack(args.var.resolve(), _ports(dict(os.environ)))
    if args.action == "up":
        stack.up()
        symbols = list_reference_data(f"127.0.0.1:{stack.ports.core}")
        print(f"markets: {', '.join(symbols)}")
        print_endpoints(stack.ports)
    elif args.action == "down":
        stack.down()
    elif not stack.status():
        raise SystemExit(1)


def print_endpoints(ports: Ports) -> None:
    print(
        "\nThe exchange runs on loopback:\n"
        f"  core gRPC (trading, funding, admin): 127.0.0.1:{ports.core}\n"
        f"  Kafka-API broker:                    127.0.0.1:{ports.broker}\n"
        "Stop it with: bash infra/down.sh"
    )


if __name__ == "__main__":
    main()
