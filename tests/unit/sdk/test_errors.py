"""Errors map to one class per family by the code the contract declares for the reason;
gRPC statuses with an ErrorInfo become typed exceptions with that reason."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from exchange.common.v1 import errors_pb2
from exchange_sdk import errors
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


@pytest.mark.parametrize(
    ("reason", "family"),
    [
        ("PRICE_TICK_VIOLATION", errors.InvalidRequestError),
        ("SYMBOL_UNKNOWN", errors.NotFoundError),
        ("IDEMPOTENCY_KEY_REUSED", errors.ConflictError),
        ("INSUFFICIENT_BALANCE", errors.RejectedError),
        ("RATE_LIMITED", errors.LimitExceededError),
        ("SIGNATURE_INVALID", errors.AuthenticationError),
        ("PERMISSION_DENIED", errors.PermissionDeniedError),
        ("ENGINE_UNAVAILABLE", errors.UnavailableError),
        ("INTERNAL", errors.ServerError),
    ],
)
def test_family_of_a_reason(reason: str, family: type[errors.ExchangeError]) -> None:
    assert errors.family_of(reason) is family
    error = errors.exchange_error(reason, "m")
    assert isinstance(error, family)
    assert error.reason == reason


def test_every_reason_has_a_family() -> None:
    for name in errors_pb2.ErrorReason.DESCRIPTOR.values_by_name:
        reason = name.removeprefix("ERROR_REASON_")
        assert issubclass(errors.family_of(reason), errors.ExchangeError)


def test_unknown_reasons_fall_back_to_the_code() -> None:
    assert errors.family_of("UNAVAILABLE", grpc.StatusCode.UNAVAILABLE) is errors.UnavailableError
    assert errors.family_of("DEADLINE_EXCEEDED", grpc.StatusCode.DEADLINE_EXCEEDED) is (
        errors.UnavailableError
    )
    assert errors.family_of("UNIMPLEMENTED", grpc.StatusCode.UNIMPLEMENTED) is errors.ServerError


class FakeRpcError(grpc.RpcError):
    """What grpc raises: an RpcError that is also a Call (code, details, trailers)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, bytes], ...]
    ):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers


def test_from_rpc_error_reads_error_info() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="INSUFFICIENT_BALANCE", domain="exchange", metadata={"asset": "USDT"}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=9, message="not enough", details=[detail])
    error = errors.from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "not enough",
            (("grpc-status-details-bin", status.SerializeToString()),),
        )
    )
    assert isinstance(error, errors.RejectedError)
    assert (error.reason, error.metadata, error.code) == (
        "INSUFFICIENT_BALANCE",
        {"asset": "USDT"},
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_from_rpc_error_without_details_uses_the_code() -> None:
    error = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no upstream", ()))
    assert isinstance(error, errors.UnavailableError)
    assert error.reason == "UNAVAILABLE"


def test_command_errors_of_a_batch() -> None:
    error = errors.from_command_error(
        errors_pb2.CommandError(
            reason=errors_pb2.ERROR_REASON_POST_ONLY_WOULD_TAKE, message="would take"
        )
    )
    assert isinstance(error, errors.RejectedError)
    assert error.reason == "POST_ONLY_WOULD_TAKE"
