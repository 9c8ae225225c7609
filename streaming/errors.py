"""Errors of the streaming service in the exchange's error model (docs/adr/0003-errors.md):
a gRPC status whose details hold `google.rpc.ErrorInfo{domain="exchange", reason}` with the
code the contract declares for the reason (the `(status_code)` option in errors.proto).

The status itself is built by common/error_status.py, as in every service (the core's
core/service/errors.py would pull the engine, sequencer and WAL modules into this process).
"""

from __future__ import annotations

from typing import Final

import grpc
from exchange.common.v1 import errors_pb2

from common.error_reasons import reason_name, status_code_of
from common.error_status import grpc_error_status

_STATUS_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}


class StreamingServiceError(Exception):
    """A request refused with a named reason (`ErrorReason` number) and context."""

    def __init__(
        self,
        reason: errors_pb2.ErrorReason.ValueType,
        message: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    @property
    def reason_name(self) -> str:
        return reason_name(self.reason)

    @property
    def code(self) -> int:
        return status_code_of(self.reason_name)

    def grpc_status(self) -> grpc.Status:
        return grpc_error_status(self.reason_name, self.message, self.metadata)


def field_invalid(field: str, message: str) -> StreamingServiceError:
    return StreamingServiceError(errors_pb2.ERROR_REASON_FIELD_INVALID, message, {"field": field})
