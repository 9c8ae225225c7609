"""Error reasons of the contract: their names, their gRPC codes, and the request error.

Each `exchange.common.v1.ErrorReason` value declares the gRPC code it travels with through the
`(exchange.common.v1.status_code)` enum-value option (docs/adr/0003-errors.md). The table is read
from the generated descriptor once, at import (common/error_status.py), so code and contract
cannot disagree.

`RequestError` is what every conversion in core/contracts raises for input that must not reach
the engine (missing ids, unspecified enums, non-positive amounts, oversized strings, batches
over the limit): a named reason, a message and the offending field.
"""

from __future__ import annotations

from typing import TypeAlias

from exchange.common.v1 import errors_pb2

from common.error_reasons import reason_name, status_code_of
from core.contracts.enums import REJECT_REASON
from core.engine.enums import RejectReason

ErrorReason: TypeAlias = errors_pb2.ErrorReason.ValueType


def reason_status_code(reason: int) -> int:
    """The google.rpc.Code number the contract declares for `reason`."""
    return status_code_of(reason_name(reason))


def rejection_reason(reason: RejectReason) -> ErrorReason:
    """The contract's ErrorReason of an engine rejection (by name)."""
    return errors_pb2.ErrorReason.ValueType(REJECT_REASON.to_proto(reason))


class RequestError(ValueError):
    """A request the contract refuses before anything is logged. `field` names the culprit."""

    def __init__(self, reason: ErrorReason, message: str, *, field: str = "") -> None:
        super().__init__(f"{reason_name(reason)}: {message}")
        self.reason = reason
        self.message = message
        self.field = field

    @property
    def metadata(self) -> dict[str, str]:
        return {"field": self.field} if self.field else {}


def field_invalid(field: str, message: str) -> RequestError:
    return RequestError(errors_pb2.ERROR_REASON_FIELD_INVALID, message, field=field)
