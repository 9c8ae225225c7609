"""Every failure leaves the service as a gRPC status with a named reason (docs/adr/0003).

`ServiceError(reason, message, metadata)` is raised anywhere in the service; `grpc_status`
turns it into a `grpc.Status` whose details hold `google.rpc.ErrorInfo{domain="exchange",
reason=<name>, metadata}` (plus a `google.rpc.BadRequest` naming the field for field
problems), with the code the contract declares for the reason. `service_error` maps what
lower layers raise: contract `RequestError`s, the sequencer's and the WAL's errors (system
reasons: the command was not acknowledged, a retry with the same key is safe). Anything else
is a bug: INTERNAL with no detail of the exception, which is logged.
"""

from __future__ import annotations

import logging
from typing import Final

import grpc
from exchange.common.v1 import errors_pb2

from common.error_reasons import reason_name
from common.error_status import grpc_error_status
from core.contracts.errors import (
    ErrorReason,
    RequestError,
    reason_status_code,
    rejection_reason,
)
from core.engine import RejectReason
from core.sequencer import CommandEncodeError, SequencerClosedError, SequencerError
from core.wal import (
    FencedError,
    WalClosedError,
    WalError,
    WalFailedError,
    WalLimitError,
    WalOverloadedError,
)

LOGGER: Final = logging.getLogger("core.service")

_STATUS_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}


class ServiceError(Exception):
    """A failure with a named reason, returned to the client as a gRPC status."""

    def __init__(
        self, reason: ErrorReason, message: str, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{reason_name(reason)}: {message}")
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    @property
    def code(self) -> grpc.StatusCode:
        return _STATUS_CODES[reason_status_code(self.reason)]

    @classmethod
    def rejected(cls, reason: RejectReason, metadata: dict[str, str] | None = None) -> ServiceError:
        """An engine rejection, by name."""
        return cls(rejection_reason(reason), f"rejected: {reason.name}", metadata)


def grpc_status(error: ServiceError) -> grpc.Status:
    """The gRPC status of `error`, with ErrorInfo (and BadRequest for a field) in its details."""
    return grpc_error_status(reason_name(error.reason), error.message, error.metadata)


_UNAVAILABLE_MESSAGE: Final = "not acknowledged; retry with the same idempotency key"


def service_error(error: Exception) -> ServiceError:  # noqa: PLR0911  (one per family)
    """The ServiceError of anything a handler raised (an unknown exception is INTERNAL, logged)."""
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, RequestError):
        return ServiceError(error.reason, error.message, error.metadata)
    if isinstance(error, FencedError):
        return ServiceError(errors_pb2.ERROR_REASON_ENGINE_FENCED, _UNAVAILABLE_MESSAGE)
    if isinstance(error, WalFailedError):
        return ServiceError(errors_pb2.ERROR_REASON_WAL_WRITE_FAILED, _UNAVAILABLE_MESSAGE)
    if isinstance(error, WalOverloadedError | SequencerClosedError | WalClosedError):
        return ServiceError(errors_pb2.ERROR_REASON_ENGINE_UNAVAILABLE, _UNAVAILABLE_MESSAGE)
    if isinstance(error, CommandEncodeError):
        return ServiceError(errors_pb2.ERROR_REASON_FIELD_INVALID, "a field cannot be logged")
    if isinstance(error, WalLimitError):
        return ServiceError(errors_pb2.ERROR_REASON_PAYLOAD_TOO_LARGE, "the request is too large")
    if isinstance(error, SequencerError | WalError):
        LOGGER.error("the sequencer refuses commands", exc_info=error)
        return ServiceError(errors_pb2.ERROR_REASON_ENGINE_UNAVAILABLE, _UNAVAILABLE_MESSAGE)
    LOGGER.error("unexpected error in a handler", exc_info=error)
    return ServiceError(errors_pb2.ERROR_REASON_INTERNAL, "internal error")


def is_retryable(error: ServiceError) -> bool:
    """System reasons mean "not acknowledged": never remember them as a request's answer."""
    return error.code in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}
