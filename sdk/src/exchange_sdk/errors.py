"""Errors the SDK raises, each carrying the exchange's named reason.

The reason is the ``ErrorReason`` value name without its ``ERROR_REASON_`` prefix,
exactly as it travels in ``google.rpc.ErrorInfo.reason`` (docs/adr/0003-errors.md).

One exception class per family, chosen by the gRPC code the contract declares for the
reason (``(exchange.common.v1.status_code)``), so ``except RejectedError`` catches every
business rejection and ``error.reason`` tells which one:

| family | gRPC code | e.g. |
|---|---|---|
| InvalidRequestError | INVALID_ARGUMENT | PRICE_TICK_VIOLATION, PRECISION_EXCEEDED |
| NotFoundError | NOT_FOUND | SYMBOL_UNKNOWN, ORDER_NOT_FOUND |
| ConflictError | ALREADY_EXISTS, ABORTED | IDEMPOTENCY_KEY_REUSED |
| RejectedError | FAILED_PRECONDITION | INSUFFICIENT_BALANCE, POST_ONLY_WOULD_TAKE |
| LimitExceededError | RESOURCE_EXHAUSTED | RATE_LIMITED |
| AuthenticationError | UNAUTHENTICATED | SIGNATURE_INVALID |
| PermissionDeniedError | PERMISSION_DENIED | PERMISSION_DENIED |
| UnavailableError | UNAVAILABLE, DEADLINE_EXCEEDED | ENGINE_UNAVAILABLE (retry is safe) |
| ServerError | anything else | INTERNAL, UNIMPLEMENTED |

A status without an ErrorInfo (Envoy's own 503, a deadline) gets the gRPC code's name as
its reason (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``UNIMPLEMENTED``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

import grpc
from exchange.common.v1 import errors_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN: Final = "exchange"
_REASON_PREFIX: Final = "ERROR_REASON_"
_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


def error_reason_name(reason: int) -> str:
    """The ErrorInfo.reason string of an ErrorReason value, e.g. ``INSUFFICIENT_BALANCE``."""
    value = errors_pb2.ErrorReason.ValueType(reason)
    return errors_pb2.ErrorReason.Name(value).removeprefix(_REASON_PREFIX)


class ExchangeError(Exception):
    """An error the exchange returned (or the SDK found before sending), with its reason."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        code: grpc.StatusCode | None = None,
    ):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        # The gRPC status code it arrived with (None: found by the SDK before sending).
        self.code = code


class InvalidRequestError(ExchangeError):
    """The request is malformed; the same request will never succeed."""


class NotFoundError(ExchangeError):
    """The market, asset, order or transfer does not exist (for this account)."""


class ConflictError(ExchangeError):
    """An idempotency key or client order id was used before with another request."""


class RejectedError(ExchangeError):
    """A business rule said no (balance, market mode, post-only, band, order not open)."""


class LimitExceededError(ExchangeError):
    """A rate or count limit was hit (RATE_LIMITED, OPEN_ORDER_LIMIT_EXCEEDED)."""


class AuthenticationError(ExchangeError):
    """The edge did not accept the API key, timestamp or signature."""


class PermissionDeniedError(ExchangeError):
    """The API key lacks the permission for the call."""


class UnavailableError(ExchangeError):
    """Not acknowledged (system down, deadline): a retry with the same key is safe."""


class ServerError(ExchangeError):
    """A bug or an unimplemented call on the server side."""


_FAMILY_OF_CODE: Final[dict[int, type[ExchangeError]]] = {
    code_pb2.INVALID_ARGUMENT: InvalidRequestError,
    code_pb2.OUT_OF_RANGE: InvalidRequestError,
    code_pb2.NOT_FOUND: NotFoundError,
    code_pb2.ALREADY_EXISTS: ConflictError,
    code_pb2.ABORTED: ConflictError,
    code_pb2.FAILED_PRECONDITION: RejectedError,
    code_pb2.RESOURCE_EXHAUSTED: LimitExceededError,
    code_pb2.UNAUTHENTICATED: AuthenticationError,
    code_pb2.PERMISSION_DENIED: PermissionDeniedError,
    code_pb2.UNAVAILABLE: UnavailableError,
    code_pb2.DEADLINE_EXCEEDED: UnavailableError,
}


def _declared_code(reason: str) -> int | None:
    """The gRPC code errors.proto declares for `reason`, or None for an unknown reason."""
    try:
        value = errors_pb2.ErrorReason.Value(_REASON_PREFIX + reason)
    except ValueError:
        return None
    descriptor = errors_pb2.ErrorReason.DESCRIPTOR.values_by_number[value]
    options = descriptor.GetOptions()
    if not options.HasExtension(errors_pb2.status_code):
        return None
    return int(options.Extensions[errors_pb2.status_code])


def family_of(reason: str, code: grpc.StatusCode | None = None) -> type[ExchangeError]:
    """The exception class of a reason: by its declared code, else by the code received."""
    declared = _declared_code(reason)
    if declared is None and code is not None:
        declared = int(code.value[0])
    if declared is None:
        return ServerError
    return _FAMILY_OF_CODE.get(declared, ServerError)


def exchange_error(
    reason: str,
    message: str,
    *,
    metadata: Mapping[str, str] | None = None,
    code: grpc.StatusCode | None = None,
) -> ExchangeError:
    """The typed exception of a named reason."""
    family = family_of(reason, code)
    return family(reason, message, metadata=metadata, code=code)


def from_rpc_error(error: grpc.RpcError) -> ExchangeError:
    """The typed exception of a failed gRPC call (sync or asyncio), with its ErrorInfo."""
    call: grpc.Call = error  # type: ignore[assignment]  # every RpcError the SDK sees is a Call
    code = call.code()
    message = call.details() or ""
    for key, value in call.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            info = _error_info(value)
            if info is not None:
                return exchange_error(info.reason, message, metadata=info.metadata, code=code)
    return exchange_error(code.name, message, code=code)


def _error_info(status_bytes: bytes) -> error_details_pb2.ErrorInfo | None:
    status = status_pb2.Status.FromString(status_bytes)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def from_command_error(error: errors_pb2.CommandError) -> ExchangeError:
    """The typed exception of a per-command rejection in a StreamOrders batch."""
    return exchange_error(
        error_reason_name(error.reason), error.message, metadata=dict(error.metadata)
    )


class _FixedReasonError(InvalidRequestError):
    """An error the SDK raises itself before sending, always with the same reason."""

    REASON: ClassVar[int]

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None):
        super().__init__(error_reason_name(self.REASON), message, metadata=metadata)


class PrecisionExceededError(_FixedReasonError, ValueError):
    """A decimal amount has more fractional digits than its asset's scale."""

    REASON = errors_pb2.ERROR_REASON_PRECISION_EXCEEDED


class AmountOutOfRangeError(_FixedReasonError, ValueError):
    """An amount does not fit the wire's int64."""

    REASON = errors_pb2.ERROR_REASON_AMOUNT_OUT_OF_RANGE


class PriceTickViolationError(_FixedReasonError, ValueError):
    """A price is not a multiple of the market's price tick (refused before sending)."""

    REASON = errors_pb2.ERROR_REASON_PRICE_TICK_VIOLATION


class QuantityStepViolationError(_FixedReasonError, ValueError):
    """A quantity is not a multiple of the market's lot step (refused before sending)."""

    REASON = errors_pb2.ERROR_REASON_QUANTITY_STEP_VIOLATION
