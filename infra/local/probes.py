"""Readiness probes of the local exchange's components: each answers True only when the
component serves (not merely listens), and False (never raises) while it does not yet."""

from __future__ import annotations

import asyncio
import contextlib
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


def grpc_health_status(address: str, service: str, *, timeout_seconds: float = 2.0) -> str | None:
    """The `grpc.health.v1` status name of `service` at `address` (SERVING, NOT_SERVING,
    ...), "UNKNOWN_SERVICE" when it is not registered, or None when nothing answers."""
    try:
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_seconds
            )
    except grpc.RpcError as error:
        code = getattr(error, "code", lambda: None)()
        return "UNKNOWN_SERVICE" if code == grpc.StatusCode.NOT_FOUND else None
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def kafka_answers(bootstrap: str, *, timeout_seconds: float = 3.0) -> bool:
    """The Kafka-API broker answers a metadata request within the timeout (a paused broker
    still accepts connections, so its port alone says nothing)."""
    from aiokafka import AIOKafkaClient  # noqa: PLC0415 - only `status` needs it

    async def ask() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=1000)
        try:
            await asyncio.wait_for(client.bootstrap(), timeout_seconds)
        finally:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(client.close(), timeout_seconds)

    try:
        asyncio.run(ask())
    except Exception:  # noqa: BLE001 - any failure: it does not answer
        return False
    return True


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
