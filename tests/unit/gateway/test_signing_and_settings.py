"""The signature scheme and the EDGE_* configuration, exactly as documented."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from exchange.apikey.v1 import apikey_pb2

from gateway.api_keys import derive_secret
from gateway.errors import EdgeError
from gateway.settings import GatewaySettings, parse_static_keys
from gateway.signing import grpc_canonical, rest_canonical, rest_headers, signature_matches


def test_rest_signature_is_the_seeds_hmac_of_method_path_ts_body() -> None:
    body = b'{"symbol":"BTC-USDT"}'
    headers = rest_headers(
        key_id="key1",
        secret="secret1",
        method="post",
        path="/v1/orders",
        timestamp_ms=1700000000000,
        body=body,
    )
    expected = hmac.new(
        b"secret1", b"POST\n/v1/orders\n1700000000000\n" + body, hashlib.sha256
    ).hexdigest()
    assert headers == {"X-API-KEY": "key1", "X-TS": "1700000000000", "X-SIGNATURE": expected}


def test_grpc_canonical_string_signs_the_message_digest() -> None:
    canonical = grpc_canonical(
        method_path="/exchange.trading.v1.TradingService/PlaceOrder",
        timestamp_ms="1",
        message=b"\n\x02g1",
    )
    digest = hashlib.sha256(b"\n\x02g1").hexdigest()
    assert (
        canonical == f"POST\n/exchange.trading.v1.TradingService/PlaceOrder\n1\n{digest}".encode()
    )
    streaming = grpc_canonical(method_path="/a/B", timestamp_ms="1", message=None)
    assert streaming.endswith(hashlib.sha256(b"").hexdigest().encode())


def test_signature_check_is_exact() -> None:
    canonical = rest_canonical(method="GET", path="/v1/orders?symbol=X", timestamp_ms="5", body=b"")
    good = hmac.new(b"s", canonical, hashlib.sha256).hexdigest()
    assert signature_matches("s", canonical, good)
    assert signature_matches("s", canonical, good.upper())
    assert not signature_matches("s", canonical + b" ", good)
    assert not signature_matches("t", canonical, good)


def test_the_seeds_edge_api_secrets_form_still_works() -> None:
    (first, second) = parse_static_keys("key1:secret1,key2:secret2")
    assert (first.key_id, first.secret, first.account_id) == ("key1", "secret1", "key1")
    assert apikey_pb2.PERMISSION_TRADE in first.permissions
    assert apikey_pb2.PERMISSION_OPERATE not in second.permissions


def test_extended_static_keys_name_account_and_permissions() -> None:
    (ops,) = parse_static_keys("ops:s3:operator-1:OPERATE+read")
    assert ops.account_id == "operator-1"
    assert ops.permissions == (apikey_pb2.PERMISSION_OPERATE, apikey_pb2.PERMISSION_READ)
    with pytest.raises(ValueError, match="not key:secret"):
        parse_static_keys("lonely")


def test_settings_come_from_the_seeds_environment_variables() -> None:
    settings = GatewaySettings.from_environment(
        {
            "EDGE_API_SECRETS": "k:s",
            "EDGE_AUTH_SKEW_SEC": "10",
            "EDGE_REPLAY_TTL_SEC": "20",
            "EDGE_RATE_LIMIT_PER_MINUTE": "7",
        }
    )
    assert (settings.auth_skew_seconds, settings.replay_ttl_seconds) == (10, 20)
    assert settings.rate_limit_per_minute == 7
    assert settings.static_keys[0].key_id == "k"
    with pytest.raises(ValueError, match="twice"):
        GatewaySettings.from_environment({"EDGE_AUTH_SKEW_SEC": "60", "EDGE_REPLAY_TTL_SEC": "60"})


def test_derived_secrets_depend_on_master_key_id_and_salt() -> None:
    secret = derive_secret("master", "ak_1", "salt")
    assert len(secret) == 64
    assert secret == derive_secret("master", "ak_1", "salt")
    assert secret != derive_secret("master2", "ak_1", "salt")
    assert secret != derive_secret("master", "ak_2", "salt")
    assert secret != derive_secret("master", "ak_1", "salt2")


def test_edge_errors_follow_the_contracts_codes() -> None:
    assert EdgeError("RATE_LIMITED", "x").http_status == 429
    assert EdgeError("API_KEY_REVOKED", "x").http_status == 401
    assert EdgeError("OPERATOR_REQUIRED", "x").http_status == 403
    assert EdgeError("IDEMPOTENCY_KEY_REUSED", "x").http_status == 409
    assert EdgeError("IDEMPOTENCY_KEY_MISSING", "x").http_status == 400
    with pytest.raises(ValueError, match="not an ErrorReason"):
        EdgeError("MADE_UP", "x")
