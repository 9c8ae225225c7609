"""Detached processes under a var/ directory: start, wait until ready, check, stop.

`Supervisor(var).start(component)` starts a `Component` that is not running as a detached
process (its own session, so it outlives the command that started it) with its log in
`var/log/<name>.log` and its pid in `var/run/<name>.pid`, then polls its `ready` check until
it answers True (`SystemExit` when the process exits first or the check times out). `stop`
sends the component's stop signal and SIGKILLs its process group after a grace period.
`health_problem` says why a running component is unhealthy: its health check, then, for a
component with an event path, that path's `grpc.health.v1` status (common/event_path_health.py)
with the last `event path unhealthy:` line of its log as the reason.

What the exchange runs is infra/local/components.py; the command line is infra/local/stack.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from common.event_path_health import EVENT_PATH_SERVICE, UNHEALTHY_PREFIX
from infra.local.probes import grpc_health_status

REPO_ROOT: Final = Path(__file__).resolve().parents[2]


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


def running_for(seconds: float) -> Callable[[], bool]:
    """A readiness check for a process with nothing to probe: True once `seconds` have passed
    since its first call (`Supervisor.start` fails meanwhile if the process exits)."""
    first_call_at: list[float] = []

    def ready() -> bool:
        now = time.monotonic()
        if not first_call_at:
            first_call_at.append(now)
        return now - first_call_at[0] >= seconds

    return ready


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


class Supervisor:
    """The detached processes of the components whose pid files are in `var/run/`."""

    def __init__(self, var: Path) -> None:
        self.var = var

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
