"""Readiness probes of the local exchange's components: each answers True only when the
component serves (not merely listens), and False (never raises) while it does not yet."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra.local.postgres import SUPERUSER, postgres_bin_directory


def grpc_serving(address: str, service: str = "", *, timeout_seconds: float = 1.0) -> bool:
    """`grpc.health.v1.Health/Check` of `service` at `address` answers SERVING."""
    try:
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_seconds
            )
    except grpc.RpcError:
        return False
    serving: bool = response.status == health_pb2.HealthCheckResponse.SERVING
    return serving


def http_ok(url: str, *, timeout_seconds: float = 1.0) -> bool:
    """A GET of `url` (loopback http) answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # noqa: S310 - loopback http
            ok: bool = response.status == 200
            return ok
    except (urllib.error.URLError, OSError):
        return False


def postgres_accepts(port: int) -> bool:
    """`pg_isready` says the server on 127.0.0.1:`port` accepts connections."""
    binary = postgres_bin_directory() / "pg_isready"
    command = str(binary) if binary.exists() else (shutil.which("pg_isready") or "pg_isready")
    arguments = [command, "-q", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER]
    result = subprocess.run(arguments, check=False, timeout=10)
    return result.returncode == 0
