"""Run a child Python script and SIGKILL it at a chosen moment: the crash tests' harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.paths import REPO_ROOT


def run_until_killed(
    script: Path, *arguments: str, kill_delay_seconds: float, ready_timeout_seconds: float
) -> list[bytes]:
    """Start `script`, wait for its "ready" line, SIGKILL it `kill_delay_seconds` later.

    Returns the lines it printed completely (a line the kill cut short is dropped, since
    the child never finished saying it), without the "ready" line.
    """
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), *arguments],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=environment,
    )
    if child.stdout is None:
        raise RuntimeError("no stdout pipe")
    stdout = child.stdout
    lines: list[bytes] = []
    ready = threading.Event()

    def read_stdout() -> None:
        for line in stdout:
            if line.startswith(b"ready"):
                ready.set()
            lines.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert ready.wait(ready_timeout_seconds), "child never became ready"
        time.sleep(kill_delay_seconds)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
        reader.join(timeout=10)
        stdout.close()
    assert child.returncode == -signal.SIGKILL
    return [line for line in lines if line.endswith(b"\n") and not line.startswith(b"ready")]
