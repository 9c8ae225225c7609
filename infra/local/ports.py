"""Free loopback TCP ports for servers started by the stack or by tests."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_open(port: int, *, host: str = "127.0.0.1") -> bool:
    """Something accepts TCP connections on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, timeout_seconds: float, host: str = "127.0.0.1") -> None:
    """Block until a TCP connect to host:port succeeds; `TimeoutError` after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                message = f"nothing answered on {host}:{port} within {timeout_seconds}s"
                raise TimeoutError(message) from error
            time.sleep(0.02)
