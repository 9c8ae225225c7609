"""The edge's fuzz, short form (the long one is bench/fuzz.py), against the real local
exchange behind Envoy (ADR 0015).

REST: schemathesis over every route of gen/openapi/exchange.openapi.json, signed as the SDK
signs. Aims: no response >= 500; every refusal carries an ErrorInfo.reason; no order exists
that no accepted request made. gRPC: hostile messages generated from the descriptors on every
method of every service: never UNKNOWN or INTERNAL, every refusal with a reason.
"""

from __future__ import annotations

import json
from typing import Any

from exchange.apikey.v1 import apikey_pb2  # noqa: F401 - registers the services' descriptors
from exchange.core.v1 import core_admin_pb2  # noqa: F401
from exchange.funding.v1 import funding_pb2  # noqa: F401
from exchange.ledger.v1 import ledger_pb2  # noqa: F401
from exchange.marketdata.v1 import marketdata_pb2  # noqa: F401
from exchange.trading.v1 import trading_pb2  # noqa: F401
from google.protobuf import descriptor_pool

from infra.local.edge_client import ApiKey
from tests.support.grpc_hostile import is_fault, probe
from tests.support.local_stack import StackCommand
from tests.support.rest_fuzz import OPENAPI_PATH, Exchange, RestFuzzer, signed_get

CASES_PER_OPERATION = 40  # x 54 operations: >= 2,000 cases


def _order_ids(document: Any) -> set[str]:
    """Every `order_id` anywhere in a JSON document."""
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "order_id" and isinstance(value, str) and value:
                found.add(value)
            else:
                found |= _order_ids(value)
    elif isinstance(document, list):
        for item in document:
            found |= _order_ids(item)
    return found


def _orders_of(stack: StackCommand, key: ApiKey) -> set[str]:
    ids: set[str] = set()
    token = ""
    while True:
        target = "/v1/orders?page_size=500" + (f"&page_token={token}" if token else "")
        status, body = signed_get(stack.edge_url, key, target)
        assert status == 200, body
        page = json.loads(body)
        ids |= {order["order_id"] for order in page.get("orders", [])}
        token = page.get("next_page_token", "")
        if not token:
            return ids


def test_every_rest_route_survives_the_fuzz(stack: StackCommand) -> None:
    keys = stack.keys()
    trader = keys["demo-alice"]
    before = _orders_of(stack, trader)
    fuzzer = RestFuzzer(stack.edge_url, trader=trader, operator=keys["operator"])
    accepted: set[str] = set()

    def collect(exchange: Exchange) -> None:
        if exchange.status == 200 and exchange.method != "GET":
            accepted.update(_order_ids(json.loads(exchange.body)))

    fuzzer.observers.append(collect)
    report = fuzzer.run(CASES_PER_OPERATION)
    print("\n".join(report.lines()))

    assert OPENAPI_PATH.exists()
    assert len(report.exchanges) >= 2000
    assert len({exchange.route for exchange in report.exchanges}) >= 50
    assert [(e.route, e.target, e.status, e.body[:300]) for e in report.server_errors] == []
    assert [(e.route, e.target, e.status) for e in report.refusals_without_reason] == []
    created = _orders_of(stack, trader) - before
    assert created <= accepted, "orders exist that no accepted request created"


def test_every_grpc_method_refuses_hostile_messages_with_a_reason(stack: StackCommand) -> None:
    """The descriptor-generated hostile messages (tests/support/grpc_hostile.py) on every
    method of every service, on each service's own port: never UNKNOWN or INTERNAL."""
    targets = {
        stack.core_address: [
            "exchange.trading.v1.TradingService",
            "exchange.funding.v1.FundingService",
            "exchange.core.v1.CoreAdminService",
        ],
        stack.ledger_address: ["exchange.ledger.v1.LedgerService"],
        stack.gateway_grpc_address: [
            "exchange.marketdata.v1.MarketDataService",
            "exchange.apikey.v1.ApiKeyService",
        ],
        f"127.0.0.1:{stack.ports.streaming}": ["exchange.marketdata.v1.MarketDataService"],
    }
    streaming = f"127.0.0.1:{stack.ports.streaming}"
    # The streaming process serves only the history reads of MarketDataService (the gateway
    # serves the rest): its UNIMPLEMENTED for the others is right, not a fault.
    history = {
        "exchange.marketdata.v1.MarketDataService.ListCandles",
        "exchange.marketdata.v1.MarketDataService.ListTrades",
    }
    outcomes = [
        outcome
        for target, services in targets.items()
        for outcome in probe(target, services)
        if target != streaming or outcome.method in history
    ]
    pool = descriptor_pool.Default()
    methods = {
        method.full_name
        for services in targets.values()
        for service in services
        for method in pool.FindServiceByName(service).methods
    }
    assert {outcome.method for outcome in outcomes} == methods
    assert [outcome for outcome in outcomes if is_fault(outcome)] == []
    utf8 = [outcome for outcome in outcomes if outcome.case.startswith("invalid-utf8")]
    assert {outcome.reason for outcome in utf8} >= {"ENCODING_INVALID"}
