"""The local exchange for tests: `python -m infra.local.stack` exactly as a newcomer runs it,
every component on a free loopback port, its var/ in a fresh temporary directory; the demo
bots off (EXCHANGE_DEMO_BOTS=0) unless a test asks for them, so the market is quiet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from infra.local.components import (
    DEMO_BOTS_VARIABLE,
    DEMO_SYMBOLS,
    PORT_VARIABLES,
    StackPorts,
    markets_listed,
    ports_from_environment,
)
from infra.local.demo_accounts import read_demo_keys
from infra.local.edge_client import ApiKey
from infra.local.ports import free_port
from tests.paths import REPO_ROOT


class StackCommand:
    """Runs `python -m infra.local.stack <action> --var <var>` with this stack's ports."""

    def __init__(
        self, var: Path, *, bots: bool = False, environment: Mapping[str, str] | None = None
    ) -> None:
        self.var = var
        self.environment = {
            **os.environ,
            **{variable: str(free_port()) for variable, _default in PORT_VARIABLES.values()},
            DEMO_BOTS_VARIABLE: "1" if bots else "0",
            **(environment or {}),  # e.g. a component's setting (EXCHANGE_CORE_HISTORY_WINDOW)
        }
        self.ports: StackPorts = ports_from_environment(self.environment)

    def __call__(self, action: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infra.local.stack", action, "--var", str(self.var), *extra],
            cwd=REPO_ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.envoy}"

    @property
    def edge_address(self) -> str:
        return f"127.0.0.1:{self.ports.envoy}"

    @property
    def core_address(self) -> str:
        return f"127.0.0.1:{self.ports.core}"

    @property
    def ledger_address(self) -> str:
        return f"127.0.0.1:{self.ports.ledger}"

    @property
    def gateway_grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports.gateway_grpc}"

    @property
    def broker_address(self) -> str:
        return f"127.0.0.1:{self.ports.broker}"

    @property
    def keys_file(self) -> Path:
        return self.var / "demo-keys.json"

    def keys(self) -> dict[str, ApiKey]:
        """The demo keys `up` stored (demo-alice, demo-bob, demo-maker, demo-taker, operator)."""
        return read_demo_keys(self.keys_file)

    def pid(self, component: str) -> int:
        return int((self.var / "run" / f"{component}.pid").read_text())

    def up(self) -> subprocess.CompletedProcess[str]:
        """`up`, which must succeed (the output is in the failure message otherwise)."""
        started = self("up")
        assert started.returncode == 0, started.stdout + started.stderr
        return started


@contextmanager
def local_stack(
    *, bots: bool = False, keep: bool = False, environment: Mapping[str, str] | None = None
) -> Iterator[StackCommand]:
    """A stack command over a fresh var/ (not started); `down` and removal afterwards
    (`keep`: the directory, its data and logs stay for a look).

    Not pytest's tmp_path: its parents are private to root, and the PostgreSQL server runs
    as the `postgres` OS user, which must reach its directory under var/.
    """
    directory = Path(tempfile.mkdtemp(prefix="exchange-stack-"))
    directory.chmod(0o755)
    command = StackCommand(directory / "var", bots=bots, environment=environment)
    try:
        yield command
    finally:
        command("down")
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def wait_until(
    condition_name: str, check: Callable[[], bool], *, timeout_seconds: float = 20.0
) -> None:
    """Poll `check` every 0.2 s until it holds; fail the test naming the condition."""
    deadline = time.monotonic() + timeout_seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_seconds}s: {condition_name}"
        time.sleep(0.2)


@contextmanager
def running_local_stack(
    *, bots: bool = False, keep: bool = False, environment: Mapping[str, str] | None = None
) -> Iterator[StackCommand]:
    """`local_stack`, started: `up` succeeded and the edge lists the demo markets (the
    gateway projects them from the event log after it starts)."""
    with local_stack(bots=bots, keep=keep, environment=environment) as command:
        command.up()
        wait_until(
            "the edge lists the markets", lambda: markets_listed(command.edge_url, DEMO_SYMBOLS)
        )
        yield command
