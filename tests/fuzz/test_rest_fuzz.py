"""schemathesis over every REST route of gen/openapi/exchange.openapi.json against the real
local exchange behind Envoy, signed as the SDK signs (ADR 0015). Aims: no response >= 500;
every refusal carries an ErrorInfo.reason; no order exists that no accepted request made.
The long form is bench/fuzz.py."""

from __future__ import annotations

import json
from typing import Any

from infra.local.edge_client import ApiKey
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
