"""Errors of the streaming service in the exchange's error model (docs/adr/0003-errors.md):
a gRPC status whose details hold `google.rpc.ErrorInfo{domain="exchange", reason}` with the
code the contract declares for the reason (the `(status_code)` option in errors.proto).

A small helper of its own: core/service/errors.py pulls the core's engine, sequencer and
WAL modules in with it, which this process must not load.
"""

from __future__ import annotations

from typing import Final

import grpc
from exchange.common.v1 import errors_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN: Final = "exchange"
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
        return errors_pb2.ErrorReason.Name(self.reason).removeprefix("ERROR_REASON_")

    @property
    def code(self) -> int:
        value = errors_pb2.ErrorReason.DESCRIPTOR.values_by_number[self.reason]
        code: int = value.GetOptions().Extensions[errors_pb2.status_code]
        return code

    def grpc_status(self) -> grpc.Status:
        status = status_pb2.Status(code=self.code, message=self.message)
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(
                reason=self.reason_name, domain=ERROR_DOMAIN, metadata=self.metadata
            )
        )
        converted: grpc.Status = rpc_status.to_status(status)
        return converted


def field_invalid(field: str, message: str) -> StreamingServiceError:
    return StreamingServiceError(errors_pb2.ERROR_REASON_FIELD_INVALID, message, {"field": field})
