"""Free loopback TCP ports for servers started by the stack or by tests."""

from __future__ import annotations

import random
import socket
import time

# Below Linux's ephemeral range (32768-60999 by default), from which the OS takes the local
# port of every outgoing connection: a port picked there can be taken by some client's
# connection between the pick and the server's bind (a core restarted minutes later
# found its port in use).
_PICK_RANGE = range(20_000, 32_768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on right now, outside the ephemeral range and not
    handed out before by this process (a race with another process binding it first is
    still possible, but no outgoing connection takes it)."""
    for _attempt in range(1_000):
        port = random.choice(_PICK_RANGE)  # noqa: S311 - not a secret
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    message = f"no free port in {_PICK_RANGE.start}-{_PICK_RANGE.stop - 1}"
    raise RuntimeError(message)


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
