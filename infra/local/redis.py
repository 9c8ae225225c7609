"""The local Redis: the real `redis-server` (Debian package `redis-server`, see
infra/apt-packages.txt) on a free loopback port, in memory (`--save ''`, no AOF).

The gateway keeps API keys, replay marks, rate-limit windows and idempotency
fingerprints in Redis. Production runs Redis with persistence (AOF) and a replica;
here every run starts empty unless `directory` with `appendonly` is given, which
lets a test restart the server and keep its data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from infra.local.ports import free_port, wait_for_port
from infra.local.processes import stop_process


def redis_server_binary() -> str:
    """The `redis-server` on PATH (infra/bootstrap.sh installs the Debian package)."""
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        message = "redis-server is not installed: run infra/bootstrap.sh"
        raise FileNotFoundError(message)
    return found


def redis_server_arguments(
    *, port: int, directory: Path | None, max_memory_bytes: int = 256 * 1024 * 1024
) -> list[str]:
    """`redis-server` on 127.0.0.1:`port`, no RDB snapshots; with `directory`, the
    append-only file there (data survives a restart), else in memory only."""
    arguments = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--maxmemory",
        str(max_memory_bytes),
        # Full memory evicts the least recently used keys WITH an expiry (the edge's
        # idempotency bindings, replay nonces, rate windows: at 200 commands/s a day of
        # 24-hour bindings is ~4 GiB) and never a key without one (API keys, streaming's
        # state). "noeviction" refused every write once full: after ~80 minutes of soak
        # traffic every signed POST would have failed (docs/adr/0011).
        "--maxmemory-policy",
        "volatile-lru",
    ]
    if directory is None:
        return [*arguments, "--appendonly", "no"]
    directory.mkdir(parents=True, exist_ok=True)
    return [*arguments, "--dir", str(directory), "--appendonly", "yes"]


def answers_ping(port: int) -> bool:
    """True when the Redis on 127.0.0.1:`port` answers PING (not while it loads its data)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """One `redis-server` process on 127.0.0.1:`port`.

    `directory` (optional) turns on the append-only file there, so data survives a
    restart of this server; without it the data lives as long as the process.
    """

    port: int = field(default_factory=free_port)
    directory: Path | None = None
    max_memory_bytes: int = 256 * 1024 * 1024
    log: IO[bytes] | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_seconds: float = 10.0) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            return
        arguments = redis_server_arguments(
            port=self.port, directory=self.directory, max_memory_bytes=self.max_memory_bytes
        )
        self._process = subprocess.Popen(
            arguments,
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout_seconds=timeout_seconds)
            self._wait_for_ping(timeout_seconds=timeout_seconds)
        except TimeoutError:
            self.stop()
            raise

    def _wait_for_ping(self, *, timeout_seconds: float) -> None:
        """Redis accepts connections while it still loads its data; wait for +PONG."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if answers_ping(self.port):
                return
            if time.monotonic() > deadline:
                message = f"redis on port {self.port} did not answer PING"
                raise TimeoutError(message)
            time.sleep(0.02)

    def stop(self, *, timeout_seconds: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; waits until the process is gone."""
        process, self._process = self._process, None
        stop_process(process, timeout_seconds=timeout_seconds)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
