"""The edge as the tests (and bench/edge_bench.py) run it: real Redis, the gateway as its
own process (`python -m gateway`), a real Envoy rendered by gateway/envoy_config.py, and
an upstream trading service (the stand-in, or the real core once it is wired in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.envoy_config import EdgeParameters, Endpoint, render, write_edge_descriptor
from gateway.signing import rest_headers
from infra.local.envoy import EnvoyProxy
from infra.local.ports import free_port, wait_for_port
from infra.local.redis import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[3]

# Static keys (EDGE_API_SECRETS): two traders, a read-only key and an operator.
ALICE = ("alice", "alice-secret", "acct-alice")
BOB = ("bob", "bob-secret", "acct-bob")
READER = ("reader", "reader-secret", "acct-reader")
OPERATOR = ("ops", "ops-secret", "operator-1")
STATIC_KEYS = ",".join(
    [
        f"{ALICE[0]}:{ALICE[1]}:{ALICE[2]}:READ+TRADE",
        f"{BOB[0]}:{BOB[1]}:{BOB[2]}:READ+TRADE",
        f"{READER[0]}:{READER[1]}:{READER[2]}:READ",
        f"{OPERATOR[0]}:{OPERATOR[1]}:{OPERATOR[2]}:OPERATE",
    ]
)


def limit_order_body(client_order_id: str, **overrides: object) -> dict[str, object]:
    """A REST PlaceOrder body: a BTC-USDT limit buy (2,500 USDT, 0.001 BTC), `overrides` on top."""
    order: dict[str, object] = {
        "client_order_id": client_order_id,
        "symbol": "BTC-USDT",
        "side": "SIDE_BUY",
        "order_type": "ORDER_TYPE_LIMIT",
        "price": "2500000000",
        "quantity": "100000",
    }
    order.update(overrides)
    return order


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class GatewayProcess:
    """`python -m gateway` with the EDGE_* environment; restartable on the same ports."""

    redis_url: str
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    environment: Mapping[str, str] = field(default_factory=dict)
    log: IO[bytes] | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        env = {
            **os.environ,
            "EDGE_REDIS_URL": self.redis_url,
            "EDGE_HTTP_PORT": str(self.http_port),
            "EDGE_GRPC_PORT": str(self.grpc_port),
            "EDGE_API_SECRETS": STATIC_KEYS,
            "EDGE_API_KEY_MASTER_SECRET": "test-master-secret",
            **self.environment,
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.http_port, timeout_seconds=30)
        wait_for_port(self.grpc_port, timeout_seconds=30)

    @property
    def pid(self) -> int:
        if self._process is None:
            message = "the gateway is not running"
            raise RuntimeError(message)
        return self._process.pid

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str:
        """ErrorInfo.reason of an error body ("" when there is none)."""
        try:
            document = self.json()
        except ValueError:
            return ""
        for detail in document.get("details", []) if isinstance(document, dict) else []:
            if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return str(detail.get("reason", ""))
        return ""


@dataclass
class Edge:
    """A running edge: Envoy in front of the gateway and an upstream core."""

    envoy: EnvoyProxy
    gateway: GatewayProcess
    redis: RedisServer

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.envoy.listener_port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        request = urllib.request.Request(
            self.envoy.base_url + path,
            data=body if body or method in {"POST", "PATCH"} else None,
            method=method,
            headers={"content-type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Response(answer.status, _lower(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, _lower(error.headers.items()), error.read())

    def signed(
        self,
        method: str,
        path: str,
        *,
        key: tuple[str, str, str],
        body: bytes | dict[str, Any] = b"",
        idempotency_key: str | None = None,
        timestamp_ms: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A request signed with `key` (key id, secret, account) as the seeds specify."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        signed_headers = rest_headers(
            key_id=key[0],
            secret=key[1],
            method=method,
            path=path,
            timestamp_ms=now_ms() if timestamp_ms is None else timestamp_ms,
            body=raw,
        )
        if idempotency_key is not None:
            signed_headers["Idempotency-Key"] = idempotency_key
        return self.request(method, path, body=raw, headers={**signed_headers, **(headers or {})})


def _lower(items: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in items}


def edge_parameters(
    *, core_port: int, gateway: GatewayProcess, directory: Path, **overrides: Any
) -> EdgeParameters:
    descriptor = write_edge_descriptor(directory / "edge.binpb")
    return EdgeParameters(
        listener_port=free_port(),
        admin_port=free_port(),
        core=Endpoint("127.0.0.1", core_port),
        ledger=Endpoint("127.0.0.1", free_port()),
        gateway_grpc=Endpoint("127.0.0.1", gateway.grpc_port),
        gateway_http=Endpoint("127.0.0.1", gateway.http_port),
        descriptor_path=str(descriptor),
        **overrides,
    )


def start_envoy(
    parameters: EdgeParameters, directory: Path, log: IO[bytes] | None = None
) -> EnvoyProxy:
    envoy = EnvoyProxy(
        config=render(parameters),
        config_path=directory / "envoy.json",
        listener_port=parameters.listener_port,
        admin_port=parameters.admin_port,
        log=log,
    )
    envoy.start()
    return envoy
