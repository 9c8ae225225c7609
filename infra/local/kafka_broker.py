"""The launcher of the local Kafka-API broker.

`LocalBroker` runs this repository's own broker (`python -m infra.broker`, durable segment
logs in a data directory; ADR 0014): the local stack and the tests use it. Tansu, which ran
here before, could not carry hours of load (ADR 0014 has the measurements). Production
points the same clients at Kafka or Redpanda.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from infra.local.ports import free_port, wait_for_port
from infra.local.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalBroker:
    """This repository's broker (`infra.broker`) on 127.0.0.1:`port`, its data under
    `data_dir`, restartable on the same port.

    Without a `data_dir` it uses a temporary directory removed by `__exit__` (a fresh
    broker per test); the data survives `stop`/`kill` + `start` either way.
    """

    port: int = field(default_factory=free_port)
    log: IO[bytes] | None = None
    data_dir: Path | None = None
    retention_check_seconds: float = 5.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _temporary: tempfile.TemporaryDirectory[str] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _command(self) -> list[str]:
        if self.data_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="broker-")
            self.data_dir = Path(self._temporary.name)
        return [
            sys.executable,
            "-m",
            "infra.broker",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--retention-check-seconds",
            str(self.retention_check_seconds),
        ]

    def start(self, *, timeout_seconds: float = 10.0) -> None:
        """Start the broker (again, on the same port) and wait until it accepts connections."""
        if self.running:
            return
        self._process = subprocess.Popen(
            self._command(),
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        try:
            wait_for_port(self.port, timeout_seconds=timeout_seconds)
        except TimeoutError:
            self.stop()
            raise

    def stop(self, *, timeout_seconds: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; waits until the process is gone."""
        process, self._process = self._process, None
        stop_process(process, timeout_seconds=timeout_seconds)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed or closed) and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
            self.data_dir = None
