"""The SDK signs exactly as the edge checks (gateway/signing.py), never reusing a stamp."""

from __future__ import annotations

import hashlib

import pytest
from exchange_sdk.signing import ApiCredentials, RequestSigner, grpc_canonical, rest_canonical, sign

from gateway import signing as edge

KEY = ApiCredentials("alice", "alice-secret")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/v1/orders", b'{"symbol":"BTC-USDT"}'), ("get", "/v1/orders?symbol=X", b"")],
)
def test_rest_signature_is_the_edges(method: str, path: str, body: bytes) -> None:
    signer = RequestSigner(KEY, clock_ms=lambda: 1_700_000_000_000)
    headers = signer.rest_headers(method, path, body)
    assert headers == edge.rest_headers(
        key_id="alice",
        secret="alice-secret",
        method=method,
        path=path,
        timestamp_ms=1_700_000_000_000,
        body=body,
    )
    assert rest_canonical(method=method, path=path, timestamp_ms="1", body=body) == (
        edge.rest_canonical(method=method, path=path, timestamp_ms="1", body=body)
    )


@pytest.mark.parametrize("message", [b"\x0a\x03abc", b"", None])
def test_grpc_signature_is_the_edges(message: bytes | None) -> None:
    signer = RequestSigner(KEY, clock_ms=lambda: 1_700_000_000_123)
    method = "/exchange.trading.v1.TradingService/PlaceOrder"
    assert signer.grpc_metadata(method, message) == edge.grpc_metadata(
        key_id="alice",
        secret="alice-secret",
        method_path=method,
        timestamp_ms=1_700_000_000_123,
        message=message,
    )


def test_a_known_vector() -> None:
    canonical = grpc_canonical(method_path="/p.S/M", timestamp_ms="1", message=None)
    assert canonical == f"POST\n/p.S/M\n1\n{hashlib.sha256(b'').hexdigest()}".encode()
    # Computed independently (python -c "hmac.new(b'secret', ..., sha256)").
    assert (
        sign("secret", b"GET\n/ws\n1\n")
        == "6652e4317fc26bc9931a64be165f30e34e62c8afbc90ae07fc28139a54e69903"
    )


def test_timestamps_never_repeat_within_a_millisecond() -> None:
    signer = RequestSigner(KEY, clock_ms=lambda: 5)
    stamps = [signer.timestamp_ms() for _ in range(3)]
    assert stamps == [5, 6, 7]
    first = signer.grpc_metadata("/p.S/M", b"same")
    second = signer.grpc_metadata("/p.S/M", b"same")
    assert first[2] != second[2]


def test_websocket_authentication_signs_get_ws() -> None:
    signed = RequestSigner(KEY, clock_ms=lambda: 42).websocket_authentication()
    assert signed.timestamp_ms == 42
    assert signed.signature == edge.sign("alice-secret", b"GET\n/ws\n42\n")
    assert "alice-secret" not in repr(KEY)
