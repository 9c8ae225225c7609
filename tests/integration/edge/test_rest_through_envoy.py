"""Signed REST through the real Envoy, the gateway process and Redis to a stand-in core:
order placement and cancellation, identity that clients cannot forge, one named status
and reason per authentication failure, account isolation and Idempotency-Key semantics
(including after a restart of the gateway), and malformed requests stopped at the edge."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from common.identity_headers import (
    ACCOUNT_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    IDENTITY_HEADERS,
    KEY_ID_HEADER,
    OPERATOR_HEADER,
)
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    OPERATOR,
    READER,
    Edge,
    limit_order_body,
    now_ms,
)
from tests.integration.edge.standin_core import StandInCore

_ids = itertools.count(1)


def _order(client_order_id: object = None, **overrides: object) -> dict[str, object]:
    body = limit_order_body(f"c-{next(_ids)}", **overrides)
    if client_order_id:
        body["client_order_id"] = client_order_id
    return body


def _place(edge: Edge, key: tuple[str, str, str] = ALICE, **overrides: object) -> dict[str, object]:
    response = edge.signed(
        "POST", "/v1/orders", key=key, body=_order(**overrides), idempotency_key=f"k-{next(_ids)}"
    )
    assert response.status == 200, response.body
    order: dict[str, object] = response.json()["order"]
    return order


def _calls(core: tuple[StandInCore, int]) -> int:
    return len(core[0].calls)


def test_signed_rest_order_is_placed_and_cancelled(edge: Edge) -> None:
    response = edge.signed(
        "POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key="place-1"
    )
    assert response.status == 200, response.body
    order = response.json()["order"]
    assert order["account_id"] == "acct-alice"
    assert order["price"] == "2500000000"  # int64 stays an exact string
    assert order["status"] == "ORDER_STATUS_NEW"
    assert response.headers["x-ratelimit-limit"] == "1000"
    assert int(response.headers["x-ratelimit-remaining"]) < 1000

    cancelled = edge.signed(
        "DELETE", f"/v1/orders/{order['order_id']}", key=ALICE, idempotency_key="cancel-1"
    )
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json()["order"]["status"] == "ORDER_STATUS_CANCELLED"


def test_a_request_id_must_agree_with_the_idempotency_key(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    """ADR 0006: the transcoder cannot copy the header into the message, so a REST
    mutation's request_id and its Idempotency-Key must be equal; a mismatch stops at the
    gateway."""
    before = _calls(standin_core)
    path = "/v1/orders/12345?request_id=cancel-a"
    refused = edge.signed("DELETE", path, key=ALICE, idempotency_key="cancel-b")
    assert (refused.status, refused.reason) == (400, "FIELD_INVALID")
    assert refused.json()["details"][0]["metadata"] == {"field": "request_id"}
    assert _calls(standin_core) == before
    agreed = edge.signed("DELETE", path, key=ALICE, idempotency_key="cancel-a")
    assert agreed.reason != "FIELD_INVALID", agreed.body
    assert _calls(standin_core) == before + 1


def test_identity_headers_from_the_client_never_reach_the_core(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    forged = {
        ACCOUNT_HEADER: "acct-bob",
        OPERATOR_HEADER: "operator-1",
        KEY_ID_HEADER: "bob",
        IDEMPOTENCY_KEY_HEADER: "forged-key",
    }
    assert set(forged) == set(IDENTITY_HEADERS)  # every header of the trust boundary
    idempotency_key = f"forge-{next(_ids)}"
    response = edge.signed(
        "POST",
        "/v1/orders",
        key=ALICE,
        body=_order(),
        idempotency_key=idempotency_key,
        headers=forged,
    )
    assert response.status == 200, response.body
    assert response.json()["order"]["account_id"] == "acct-alice"
    seen = standin_core[0].calls[-1].metadata
    assert seen[ACCOUNT_HEADER] == "acct-alice"
    assert seen[KEY_ID_HEADER] == "alice"
    assert seen[IDEMPOTENCY_KEY_HEADER] == idempotency_key
    assert OPERATOR_HEADER not in seen


def test_public_market_data_needs_no_key_and_private_routes_do(edge: Edge) -> None:
    public = edge.request("GET", "/v1/markets/BTC-USDT/orderbook")
    # Reaches the gateway's MarketDataService unauthenticated; this gateway reads no event
    # log (no EDGE_BROKER), so it knows no market (see test_market_data_through_envoy.py).
    assert (public.status, public.reason) == (404, "SYMBOL_UNKNOWN")
    assert edge.request("GET", "/v1/markets").json() == {}  # no markets (empty list omitted)
    private = edge.request("GET", "/v1/account/balances")
    assert (private.status, private.reason) == (401, "API_KEY_MISSING")


def _create_key(edge: Edge, *, rate_limit_per_minute: int = 0) -> tuple[str, str, str]:
    account = f"acct-created-{next(_ids)}"
    response = edge.signed(
        "POST",
        "/v1/admin/api-keys",
        key=OPERATOR,
        body={
            "request_id": f"create-{account}",
            "account_id": account,
            "label": "test",
            "permissions": ["PERMISSION_READ", "PERMISSION_TRADE"],
            "rate_limit_per_minute": rate_limit_per_minute,
        },
        idempotency_key=f"create-{account}",
    )
    assert response.status == 200, response.body
    created = response.json()
    return created["api_key"]["key_id"], created["secret"], account


def test_each_authentication_failure_has_its_own_status_and_reason(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    before = _calls(standin_core)
    path = "/v1/account/balances"

    def reason_of(**kwargs: object) -> tuple[int, str]:
        response = edge.signed("GET", path, **kwargs)  # type: ignore[arg-type]
        return response.status, response.reason

    missing = edge.request("GET", path)
    assert (missing.status, missing.reason) == (401, "API_KEY_MISSING")
    assert reason_of(key=("nobody", "x", "")) == (401, "API_KEY_UNKNOWN")
    assert reason_of(key=(ALICE[0], "wrong-secret", ALICE[2])) == (401, "SIGNATURE_INVALID")
    stale = now_ms() - 31_000
    assert reason_of(key=ALICE, timestamp_ms=stale) == (401, "TIMESTAMP_OUT_OF_WINDOW")
    future = now_ms() + 31_000
    assert reason_of(key=ALICE, timestamp_ms=future) == (401, "TIMESTAMP_OUT_OF_WINDOW")

    stamp = now_ms()
    first = edge.signed("GET", path, key=ALICE, timestamp_ms=stamp)
    assert first.status == 200, first.body
    replayed = edge.signed("GET", path, key=ALICE, timestamp_ms=stamp)
    assert (replayed.status, replayed.reason) == (401, "REQUEST_REPLAYED")

    placing = edge.signed("POST", "/v1/orders", key=READER, body=_order(), idempotency_key="r-1")
    assert (placing.status, placing.reason) == (403, "PERMISSION_DENIED")
    admin = edge.signed("GET", "/v1/admin/api-keys", key=ALICE)
    assert (admin.status, admin.reason) == (403, "OPERATOR_REQUIRED")
    # Only the one good request reached the core.
    assert _calls(standin_core) == before + 1


def test_a_revoked_key_is_refused_at_once(edge: Edge) -> None:
    key = _create_key(edge)
    assert edge.signed("GET", "/v1/account/balances", key=key).status == 200
    revoked = edge.signed(
        "POST",
        f"/v1/admin/api-keys/{key[0]}:revoke",
        key=OPERATOR,
        body={},
        idempotency_key=f"revoke-{key[0]}",
    )
    assert revoked.status == 200, revoked.body
    assert revoked.json()["api_key"]["status"] == "API_KEY_STATUS_REVOKED"
    assert revoked.json()["api_key"]["revoked_by"] == "operator-1"
    refused = edge.signed("GET", "/v1/account/balances", key=key)
    assert (refused.status, refused.reason) == (401, "API_KEY_REVOKED")


def test_over_the_rate_limit_is_429_with_retry_after(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    key = _create_key(edge, rate_limit_per_minute=3)
    if int(time.time()) % 60 > 55:  # keep the burst inside one minute window
        time.sleep(6)
    for remaining in (2, 1, 0):
        ok = edge.signed("GET", "/v1/account/balances", key=key)
        assert ok.status == 200, ok.body
        assert ok.headers["x-ratelimit-remaining"] == str(remaining)
    before = _calls(standin_core)
    limited = edge.signed("GET", "/v1/account/balances", key=key)
    assert (limited.status, limited.reason) == (429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["x-ratelimit-limit"] == "3"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) > time.time()
    assert _calls(standin_core) == before


def test_one_account_never_sees_or_cancels_another_accounts_orders(edge: Edge) -> None:
    order = _place(edge, ALICE)
    path = f"/v1/orders/{order['order_id']}"
    peek = edge.signed("GET", path, key=BOB)
    assert (peek.status, peek.reason) == (404, "ORDER_NOT_FOUND"), (peek.body, peek.headers)
    cancel = edge.signed("DELETE", path, key=BOB, idempotency_key=f"steal-{next(_ids)}")
    assert (cancel.status, cancel.reason) == (404, "ORDER_NOT_FOUND")
    mine = edge.signed("GET", path, key=ALICE)
    assert mine.status == 200
    assert mine.json()["order"]["status"] == "ORDER_STATUS_NEW"
    balances = edge.signed("GET", "/v1/account/balances", key=BOB).json()["balances"]
    assert [balance["asset"] for balance in balances] == ["USDT-of-acct-bob"]


def test_idempotency_key_is_required_bound_to_its_body_and_survives_a_gateway_restart(
    edge: Edge,
) -> None:
    missing = edge.signed("POST", "/v1/orders", key=ALICE, body=_order())
    assert (missing.status, missing.reason) == (400, "IDEMPOTENCY_KEY_MISSING")
    missing_delete = edge.signed("DELETE", "/v1/orders/1", key=ALICE)
    assert (missing_delete.status, missing_delete.reason) == (400, "IDEMPOTENCY_KEY_MISSING")

    body = _order()
    first = edge.signed("POST", "/v1/orders", key=ALICE, body=body, idempotency_key="idem-1")
    again = edge.signed("POST", "/v1/orders", key=ALICE, body=body, idempotency_key="idem-1")
    assert first.status == again.status == 200
    assert again.json() == first.json()
    other = edge.signed("POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key="idem-1")
    assert (other.status, other.reason) == (409, "IDEMPOTENCY_KEY_REUSED")
    # Keys are per account: Bob may use the same key for his own request.
    bobs = edge.signed("POST", "/v1/orders", key=BOB, body=_order(), idempotency_key="idem-1")
    assert bobs.status == 200

    edge.gateway.stop()
    edge.gateway.start()
    after = edge.signed("POST", "/v1/orders", key=ALICE, body=body, idempotency_key="idem-1")
    assert after.status == 200, after.body
    assert after.json() == first.json()
    other_after = edge.signed(
        "POST", "/v1/orders", key=ALICE, body=_order(), idempotency_key="idem-1"
    )
    assert (other_after.status, other_after.reason) == (409, "IDEMPOTENCY_KEY_REUSED")


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        (b'{"client_order_id": "x",', "MALFORMED_REQUEST", ""),
        (b"[1, 2]", "MALFORMED_REQUEST", ""),
        (json.dumps(_order(bogus=1)).encode(), "FIELD_INVALID", "bogus"),
        (json.dumps(_order(price=2.5)).encode(), "MALFORMED_REQUEST", ""),
        (json.dumps(_order(client_order_id=7)).encode(), "FIELD_INVALID", "client_order_id"),
        (json.dumps(_order(side="SIDE_SIDEWAYS")).encode(), "FIELD_INVALID", "side"),
    ],
    ids=[
        "truncated-json",
        "not-an-object",
        "unknown-field",
        "float-price",
        "wrong-type",
        "bad-enum",
    ],
)
def test_malformed_bodies_are_400_and_never_reach_the_core(
    edge: Edge, standin_core: tuple[StandInCore, int], body: bytes, reason: str, field: str
) -> None:
    before = _calls(standin_core)
    response = edge.signed(
        "POST", "/v1/orders", key=ALICE, body=body, idempotency_key=f"bad-{next(_ids)}"
    )
    assert (response.status, response.reason) == (400, reason), response.body
    if field:
        metadata = response.json()["details"][0]["metadata"]
        assert metadata["field"] == field
    assert _calls(standin_core) == before


def test_unknown_query_parameters_oversized_bodies_and_unknown_paths_stop_at_the_edge(
    edge: Edge, standin_core: tuple[StandInCore, int]
) -> None:
    before = _calls(standin_core)
    query = edge.signed("GET", "/v1/account/balances?colour=red", key=ALICE)
    assert (query.status, query.reason) == (400, "FIELD_INVALID")
    huge = _order(client_order_id="h" * (70 * 1024))
    oversized = edge.signed("POST", "/v1/orders", key=ALICE, body=huge, idempotency_key="huge")
    assert oversized.status == 413
    assert oversized.reason == "PAYLOAD_TOO_LARGE"
    unknown = edge.signed("GET", "/v1/ordersx", key=ALICE)
    assert unknown.status == 404
    assert _calls(standin_core) == before


def test_envoy_answers_health_and_keeps_its_admin_on_loopback(edge: Edge) -> None:
    assert edge.request("GET", "/healthz").status == 200
    admin = edge.envoy.config["admin"]["address"]["socket_address"]["address"]
    assert admin == "127.0.0.1"
