"""The named error reasons: each has a gRPC code in the contract and is documented."""

from __future__ import annotations

import re

import pytest
from exchange.common.v1 import errors_pb2
from exchange_sdk.errors import error_reason_name
from google.rpc import code_pb2

from tests.paths import DOCS_ROOT

_REASONS = [
    value
    for value in errors_pb2.ErrorReason.DESCRIPTOR.values
    if value.name != "ERROR_REASON_UNSPECIFIED"
]

# The gRPC-to-HTTP mapping Envoy applies to transcoded errors (grpc_json_transcoder).
_HTTP_STATUS = {
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.ABORTED: 409,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
}


def _status_code(value_name: str) -> int:
    value = errors_pb2.ErrorReason.DESCRIPTOR.values_by_name[value_name]
    code: int = value.GetOptions().Extensions[errors_pb2.status_code]
    return code


def test_every_reason_declares_a_meaningful_status_code() -> None:
    assert len(_REASONS) >= 50
    undeclared = [
        value.name
        for value in _REASONS
        if not value.GetOptions().HasExtension(errors_pb2.status_code)
        or _status_code(value.name) in (code_pb2.OK, code_pb2.UNKNOWN)
    ]
    assert undeclared == []


def test_every_status_code_maps_to_an_http_status() -> None:
    unmapped = [value.name for value in _REASONS if _status_code(value.name) not in _HTTP_STATUS]
    assert unmapped == []


def test_reason_strings_are_upper_snake_case_and_unique() -> None:
    names = [error_reason_name(value.number) for value in _REASONS]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", name) for name in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("reason", "http_status"),
    [
        ("INSUFFICIENT_BALANCE", 400),
        ("PRICE_OUT_OF_BAND", 400),
        ("PRICE_TICK_VIOLATION", 400),
        ("QUANTITY_STEP_VIOLATION", 400),
        ("MARKET_HALTED", 400),
        ("DUPLICATE_CLIENT_ORDER_ID", 409),
        ("IDEMPOTENCY_KEY_REUSED", 409),
        ("SIGNATURE_INVALID", 401),
        ("RATE_LIMITED", 429),
        ("ORDER_NOT_FOUND", 404),
        ("CORRECTION_SELF_APPROVAL", 403),
        ("ENGINE_FENCED", 503),
    ],
)
def test_brief_reasons_exist_with_their_http_status(reason: str, http_status: int) -> None:
    assert _HTTP_STATUS[_status_code(f"ERROR_REASON_{reason}")] == http_status


def test_every_reason_is_documented() -> None:
    document = (DOCS_ROOT / "api" / "errors.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", document, flags=re.MULTILINE))
    expected = {error_reason_name(value.number) for value in _REASONS}
    assert documented == expected
