"""The streaming process (`python -m streaming`) as the local stack, the tests and the
bench start it: its command line, and a handle that starts it, waits until its gRPC
health answers SERVING, and stops it (SIGTERM, or SIGKILL for the crash tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from infra.local.probes import grpc_serving
from infra.local.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKET_DATA_SERVICE = "exchange.marketdata.v1.MarketDataService"


def streaming_arguments(
    *,
    broker: str,
    redis_url: str,
    data_directory: Path,
    listen: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`python -m streaming ...` with this interpreter."""
    return [
        sys.executable,
        "-m",
        "streaming",
        "--broker",
        broker,
        "--redis-url",
        redis_url,
        "--data-dir",
        str(data_directory),
        "--listen",
        listen,
        *extra,
    ]


def streaming_ready(listen: str) -> bool:
    return grpc_serving(listen, MARKET_DATA_SERVICE)


@dataclass
class StreamingProcess:
    broker: str
    redis_url: str
    data_directory: Path
    listen: str
    extra: tuple[str, ...] = ()
    log: IO[bytes] | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_seconds: float = 60.0) -> None:
        """Start it and wait until MarketDataService's health answers SERVING."""
        self._process = subprocess.Popen(
            streaming_arguments(
                broker=self.broker,
                redis_url=self.redis_url,
                data_directory=self.data_directory,
                listen=self.listen,
                extra=self.extra,
            ),
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_seconds
        while not streaming_ready(self.listen):
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                self.kill()
                message = f"streaming is not ready ({'exited ' + str(code) if code else 'timeout'})"
                raise TimeoutError(message)
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no checkpoint, no goodbye (the crash tests)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, *, timeout_seconds: float = 20.0) -> int | None:
        """SIGTERM (SIGKILL after the timeout); returns the exit code."""
        process, self._process = self._process, None
        stop_process(process, timeout_seconds=timeout_seconds)
        return None if process is None else process.returncode
