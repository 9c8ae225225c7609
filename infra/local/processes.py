"""Stopping the server processes the launchers start."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen[bytes] | None, *, timeout_seconds: float) -> None:
    """SIGTERM, then SIGKILL if it lingers; waits until the process is gone (None: nothing)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
