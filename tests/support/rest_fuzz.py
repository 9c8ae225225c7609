"""A schemathesis fuzz of every REST route, from gen/openapi/exchange.openapi.json, against a
running edge; used by tests/fuzz (the short form) and bench/fuzz.py (the long form).

Each operation gets `cases_per_operation` cases, half of them fitting the document
(positive) and half not (negative). The signing hook signs the final bytes the way the SDK
does (gateway/signing.py: method, path with query, X-TS, body), with the key of the
route's access (a trader's for trading, the operator's for operator calls; none for public
market data), and gives every POST/DELETE a fresh Idempotency-Key unless the case brought
its own. What comes back is tallied per status, reason and route (ADR 0015: no status
>= 500, every refusal carries an ErrorInfo.reason).
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.core import NotSet
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode

from gateway.rpc_catalogue import (
    DESCRIPTOR_PATH,
    SERVICE_UPSTREAMS,
    Access,
    load_rpcs,
    rest_bindings,
)
from gateway.signing import rest_headers
from infra.local.edge_client import ApiKey
from tests.paths import REPO_ROOT

OPENAPI_PATH: Path = REPO_ROOT / "gen" / "openapi" / "exchange.openapi.json"
_TEMPLATE_VARIABLE = r"\{([^}=]+)(=[^}]*)?\}"
_keys = itertools.count(1)


@dataclass(frozen=True)
class Exchange:
    """One request sent and its answer."""

    route: str
    mode: str
    method: str
    target: str
    status: int
    reason: str
    body: bytes


@dataclass
class FuzzReport:
    exchanges: list[Exchange] = field(default_factory=list)
    unsendable: int = 0
    # Operations with no negative case at all (no parameters, no body).
    unsatisfiable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def server_errors(self) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if exchange.status >= 500]

    @property
    def refusals_without_reason(self) -> list[Exchange]:
        return [
            exchange
            for exchange in self.exchanges
            if 400 <= exchange.status < 500 and not exchange.reason
        ]

    def by_status_and_reason(self) -> Counter[tuple[int, str]]:
        return Counter((exchange.status, exchange.reason) for exchange in self.exchanges)

    def by_route(self) -> Counter[tuple[str, int]]:
        return Counter((exchange.route, exchange.status) for exchange in self.exchanges)

    def lines(self) -> list[str]:
        lines = [
            f"cases {len(self.exchanges)} (+{self.unsendable} not sendable over HTTP/1.1), "
            f"{len(self.server_errors)} responses >= 500, "
            f"{len(self.refusals_without_reason)} refusals without a reason, "
            f"{self.seconds:.1f} s",
            "per status / reason:",
        ]
        for (status, reason), count in sorted(self.by_status_and_reason().items()):
            lines.append(f"  {status} {reason or '-':28} {count}")
        lines.append("per route / status:")
        per_route: dict[str, Counter[int]] = {}
        for (route, status), count in self.by_route().items():
            per_route.setdefault(route, Counter())[status] = count
        for route, statuses in sorted(per_route.items()):
            text = " ".join(f"{status}:{count}" for status, count in sorted(statuses.items()))
            lines.append(f"  {route:58} {text}")
        return lines


def _route_access() -> dict[tuple[str, str], Access]:
    access = {}
    for rpc, binding in rest_bindings(load_rpcs(DESCRIPTOR_PATH, SERVICE_UPSTREAMS)):
        path = re.sub(_TEMPLATE_VARIABLE, r"{\1}", binding.template)
        access[(binding.method, path)] = rpc.access
    return access


def error_reason(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    details = document.get("details", []) if isinstance(document, dict) else []
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("ErrorInfo"):
            return str(detail.get("reason", ""))
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _body(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if value is None or isinstance(value, NotSet):
        return b""
    return json.dumps(value).encode()


class RestFuzzer:
    """Sends schemathesis cases to `edge_url`, signed with `trader` or `operator`."""

    def __init__(self, edge_url: str, *, trader: ApiKey, operator: ApiKey) -> None:
        self.edge_url = edge_url.rstrip("/")
        self.keys: Mapping[Access, ApiKey | None] = {
            Access.PUBLIC: None,
            Access.READ: trader,
            Access.TRADE: trader,
            Access.WITHDRAW: trader,
            Access.OPERATE: operator,
        }
        self.access = _route_access()
        self.schema = schemathesis.openapi.from_path(OPENAPI_PATH)
        self.report = FuzzReport()
        # Called with every exchange (e.g. to collect the orders a request created).
        self.observers: list[Callable[[Exchange], None]] = []

    def send(self, case: Any, mode: str) -> None:
        method = case.method.upper()
        route = f"{method} {case.path}"
        parameters = case.path_parameters or {}
        path = re.sub(
            r"\{([^}]+)\}",
            lambda match: quote(_text(parameters.get(match.group(1), "")), safe=""),
            case.path,
        )
        query_values = {name: _text(value) for name, value in (case.query or {}).items()}
        headers = {str(name): _text(value) for name, value in (case.headers or {}).items()}
        document = case.body
        if mode == GenerationMode.POSITIVE.value and method in {"POST", "DELETE"}:
            # A fresh key per accepted-looking case, equal to the request_id (ADR 0006), so
            # valid cases are not all IDEMPOTENCY_KEY_REUSED of one generated key.
            fresh = f"fuzz-{time.time_ns()}-{next(_keys)}"
            headers = {n: v for n, v in headers.items() if n.lower() != "idempotency-key"}
            headers["Idempotency-Key"] = fresh
            if isinstance(document, dict) and "request_id" in document:
                document = {**document, "request_id": fresh}
            if "request_id" in query_values:
                query_values["request_id"] = fresh
        query = urlencode(query_values)
        target = f"{path}?{query}" if query else path
        body = _body(document)
        key = self.keys[self.access[(method, case.path)]]
        if key is not None:
            headers |= rest_headers(
                key_id=key.key_id,
                secret=key.secret,
                method=method,
                path=target,
                timestamp_ms=time.time_ns() // 1_000_000,
                body=body,
            )
        request = urllib.request.Request(
            self.edge_url + target,
            data=body or None,
            method=method,
            headers={"content-type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, answer_body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, answer_body = error.code, error.read()
        except (ValueError, UnicodeEncodeError):  # a header or URL HTTP/1.1 cannot carry
            self.report.unsendable += 1
            return
        exchange = Exchange(
            route, mode, method, target, status, error_reason(answer_body), answer_body
        )
        self.report.exchanges.append(exchange)
        for observer in self.observers:
            observer(exchange)

    def run(self, cases_per_operation: int, *, seed: int = 0) -> FuzzReport:
        """Every operation of the document, half positive and half negative cases."""
        started = time.monotonic()
        for result in self.schema.get_all_operations():
            if isinstance(result, Err):  # the document is checked valid (tests/contract)
                raise result.err()
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self._run_operation(operation, mode, max(1, cases_per_operation // 2), seed)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _run_operation(self, operation: Any, mode: GenerationMode, count: int, seed: int) -> None:
        @hypothesis.seed(seed)
        @hypothesis.settings(
            max_examples=count,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            self.send(case, mode.value)

        try:
            fuzz()
        except hypothesis.errors.Unsatisfiable:  # nothing can be negative (no parameters)
            self.report.unsatisfiable.append(f"{operation.method.upper()} {operation.path}")


def signed_get(edge_url: str, key: ApiKey, target: str) -> tuple[int, bytes]:
    """A signed GET of `target` (path and query): (status, body)."""
    headers = rest_headers(
        key_id=key.key_id,
        secret=key.secret,
        method="GET",
        path=target,
        timestamp_ms=time.time_ns() // 1_000_000,
        body=b"",
    )
    request = urllib.request.Request(edge_url.rstrip("/") + target, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
