"""A minimal signed REST client for the Envoy edge (docs/api/authentication.md): what the
local exchange's smoke check and its test use to act as a demo trader. It signs with the
SDK's signer (exchange_sdk.signing), so the stack's smoke check exercises the same code
traders use."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from exchange_sdk.signing import ApiCredentials, RequestSigner


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    secret: str
    account_id: str


@dataclass(frozen=True)
class RestAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def signed_request(
    base_url: str,
    method: str,
    path: str,
    *,
    key: ApiKey,
    body: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    timeout_seconds: float = 10.0,
) -> RestAnswer:
    """One REST request signed with `key` (X-API-KEY, X-TS, X-SIGNATURE over the body)."""
    raw = b"" if body is None else json.dumps(body).encode()
    signer = RequestSigner(ApiCredentials(key.key_id, key.secret))
    headers = {"content-type": "application/json", **signer.rest_headers(method, path, raw)}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    request = urllib.request.Request(  # noqa: S310 - loopback http
        base_url + path, data=raw if body is not None else None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310 - loopback http
            return RestAnswer(response.status, response.read())
    except urllib.error.HTTPError as error:
        return RestAnswer(error.code, error.read())


def place_limit_order(
    base_url: str,
    key: ApiKey,
    *,
    client_order_id: str,
    side: str,
    price: int,
    quantity: int,
    symbol: str = "BTC-USDT",
    time_in_force: str = "TIME_IN_FORCE_GTC",
) -> RestAnswer:
    """`POST /v1/orders` of a LIMIT order (the client order id is the Idempotency-Key too);
    `side` and `time_in_force` are the enums' names, price and quantity minor units."""
    return signed_request(
        base_url,
        "POST",
        "/v1/orders",
        key=key,
        body={
            "client_order_id": client_order_id,
            "symbol": symbol,
            "side": side,
            "order_type": "ORDER_TYPE_LIMIT",
            "time_in_force": time_in_force,
            "price": str(price),
            "quantity": str(quantity),
        },
        idempotency_key=client_order_id,
    )
