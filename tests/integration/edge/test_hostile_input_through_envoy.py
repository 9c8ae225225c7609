"""Hostile input through the real Envoy and gateway (ADR 0015): every malformed request gets
a named 4xx in the one JSON error shape (a google.rpc.Status with an ErrorInfo), Envoy's own
replies included; nothing of it reaches a service, and an Idempotency-Key binds only once a
request was accepted."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from tests.integration.edge.harness import ALICE, OPERATOR, Edge, Response, limit_order_body
from tests.integration.edge.standin_core import StandInCore

_ids = itertools.count(1)


def _order(**overrides: object) -> dict[str, object]:
    return limit_order_body(f"h-{next(_ids)}", **overrides)


def _calls(core: tuple[StandInCore, int]) -> int:
    return len(core[0].calls)


def _refused(response: Response, status: int, reason: str) -> dict[str, Any]:
    """The response is `status` with the JSON error shape naming `reason`."""
    assert (response.status, response.reason) == (status, reason), (
        response.status,
        response.headers,
        response.body,
    )
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    assert document["message"].startswith(reason)
    return document


def test_invalid_utf8_in_the_path_is_encoding_invalid(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    before = _calls(standin_core)
    _refused(edge.signed("GET", "/v1/orders/%ff%fe", key=ALICE), 400, "ENCODING_INVALID")
    query = edge.signed("GET", "/v1/orders/1?order_id=%c3%28", key=ALICE)
    assert query.status == 400
    assert query.reason in {"ENCODING_INVALID", "DUPLICATE_FIELD"}
    assert _calls(standin_core) == before


def test_deep_nesting_is_a_named_400_not_a_503(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    before = _calls(standin_core)
    for body in (b"[" * 1000, b'{"a":' * 1000, json.dumps(_order(memo=[[[[[]]]]] * 2)).encode()):
        response = edge.signed(
            "POST", "/v1/orders", key=ALICE, body=body, idempotency_key=f"deep-{next(_ids)}"
        )
        assert response.status == 400, response.body
        assert response.reason in {"NESTING_TOO_DEEP", "FIELD_INVALID"}, response.body
    deep = edge.signed("POST", "/v1/orders", key=ALICE, body=b"[" * 1000, idempotency_key="d-1")
    _refused(deep, 400, "NESTING_TOO_DEEP")
    assert _calls(standin_core) == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (json.dumps(_order(price="45914.00")).encode(), "MALFORMED_REQUEST"),
        (json.dumps(_order()).replace('"2500000000"', "1e4").encode(), "MALFORMED_REQUEST"),
        (json.dumps(_order()).replace('"2500000000"', "25.0").encode(), "MALFORMED_REQUEST"),
        (b"\xef\xbb\xbf" + json.dumps(_order()).encode(), "MALFORMED_REQUEST"),
        (json.dumps(_order()).encode().replace(b"BTC", b"\xff\xfe"), "ENCODING_INVALID"),
        (json.dumps(_order()).replace("BTC-USDT", "\\ud800").encode(), "ENCODING_INVALID"),
        (json.dumps(_order()).replace('"2500000000"', "NaN").encode(), "MALFORMED_REQUEST"),
        (json.dumps(_order(price=True)).encode(), "MALFORMED_REQUEST"),
    ],
    ids=[
        "decimal-string",
        "exponent",
        "fraction",
        "byte-order-mark",
        "invalid-utf8",
        "lone-surrogate",
        "nan",
        "boolean-integer",
    ],
)
def test_what_the_transcoder_would_refuse_the_gateway_refuses_before_binding_the_key(
    edge: Edge, standin_core: tuple[StandInCore, int], body: bytes, reason: str
) -> None:
    before = _calls(standin_core)
    key = f"strict-{next(_ids)}"
    refused = edge.signed("POST", "/v1/orders", key=ALICE, body=body, idempotency_key=key)
    _refused(refused, 400, reason)
    assert _calls(standin_core) == before
    # The refused request did not bind the key: the corrected retry with it is accepted.
    corrected = edge.signed("POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key=key)
    assert corrected.status == 200, corrected.body
    assert _calls(standin_core) == before + 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"client_order_id": "a", "client_order_id": "b", "symbol": "BTC-USDT"}',
        json.dumps(_order()).replace('"symbol"', '"clientOrderId": "x", "symbol"').encode(),
    ],
    ids=["same-key-twice", "field-and-json-name"],
)
def test_duplicate_json_keys_are_refused(
    edge: Edge, standin_core: tuple[StandInCore, int], body: bytes
) -> None:
    before = _calls(standin_core)
    response = edge.signed(
        "POST", "/v1/orders", key=ALICE, body=body, idempotency_key=f"dup-{next(_ids)}"
    )
    _refused(response, 400, "DUPLICATE_FIELD")
    assert _calls(standin_core) == before


@pytest.mark.parametrize(
    "query",
    ["request_id=dq-1&request_id=dq-1", "request_id=dq-1&requestId=dq-1", "order_id=5"],
    ids=["same-parameter-twice", "name-and-json-name", "query-repeats-the-path"],
)
def test_duplicate_query_parameters_are_refused(
    edge: Edge, standin_core: tuple[StandInCore, int], query: str
) -> None:
    before = _calls(standin_core)
    response = edge.signed("DELETE", f"/v1/orders/5?{query}", key=ALICE, idempotency_key="dq-1")
    _refused(response, 400, "DUPLICATE_FIELD")
    assert _calls(standin_core) == before


def test_a_non_utf8_idempotency_key_is_refused_and_never_collides(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    """Header bytes outside printable ASCII are refused by Envoy's header check before the
    gateway sees them (the gateway would get them as `!`, so `k-\\xff\\xfe` and
    `k-\\xfe\\xff` would read the same): both are a named 400, never one bound and the
    other a 409."""
    before = _calls(standin_core)
    for raw in (b"k-\xff\xfe", b"k-\xfe\xff"):
        response = edge.signed(
            "POST",
            "/v1/orders",
            key=ALICE,
            body=_order(),
            headers={"Idempotency-Key": raw},  # type: ignore[dict-item]  # raw bytes on purpose
        )
        _refused(response, 400, "MALFORMED_REQUEST")
    bang = edge.signed("POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key="k-!!")
    document = _refused(bang, 400, "FIELD_INVALID")
    assert document["details"][0]["metadata"] == {"field": "Idempotency-Key"}
    control = edge.signed("POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key="a\tb")
    _refused(control, 400, "MALFORMED_REQUEST")
    assert _calls(standin_core) == before
    accepted = edge.signed("POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key="k-ok")
    assert accepted.status == 200, accepted.body


def test_envoys_own_replies_speak_the_error_model(edge: Edge) -> None:
    _refused(edge.request("GET", "/v1/no-such-route"), 404, "ROUTE_NOT_FOUND")
    _refused(edge.request("PUT", "/v1/markets"), 404, "ROUTE_NOT_FOUND")
    # Public routes skip the gateway: the transcoder's parse error is Envoy's own 400.
    _refused(
        edge.request("GET", "/v1/markets/BTC-USDT/orderbook?depth=abc"), 400, "MALFORMED_REQUEST"
    )
    # The ledger is not running behind this edge: Envoy's 503 names the service.
    down = edge.signed("GET", "/v1/admin/entries", key=OPERATOR)
    _refused(down, 503, "SERVICE_UNAVAILABLE")


def test_an_unreachable_gateway_is_service_unavailable(edge: Edge) -> None:
    edge.gateway.stop()
    try:
        response = edge.signed("GET", "/v1/account/balances", key=ALICE)
        _refused(response, 503, "SERVICE_UNAVAILABLE")
    finally:
        edge.gateway.start()


def test_headers_a_grpc_upstream_would_refuse_are_refused_at_the_edge(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    """Envoy's HTTP/1 codec passes header names like `x^y` and obs-text values that the
    services' gRPC stack answers with INTERNAL (500, found by the fuzz): refused first."""
    before = _calls(standin_core)
    for headers in ({"x^y": "1"}, {"x-note": b"caf\xe9"}):
        response = edge.signed(
            "GET",
            "/v1/account/balances",
            key=ALICE,
            headers=headers,  # type: ignore[arg-type]  # raw bytes on purpose
        )
        _refused(response, 400, "MALFORMED_REQUEST")
    _refused(edge.request("GET", "/v1/markets", headers={"x|y": "1"}), 400, "MALFORMED_REQUEST")
    assert _calls(standin_core) == before
