"""Errors the SDK raises, each carrying the exchange's named reason.

The reason is the ``ErrorReason`` value name without its ``ERROR_REASON_``
prefix, exactly as it travels in ``google.rpc.ErrorInfo.reason``.
"""

from __future__ import annotations

from typing import ClassVar

from exchange.common.v1 import errors_pb2

ERROR_DOMAIN = "exchange"
_REASON_PREFIX = "ERROR_REASON_"


def error_reason_name(reason: int) -> str:
    """The ErrorInfo.reason string of an ErrorReason value, e.g. ``INSUFFICIENT_BALANCE``."""
    value = errors_pb2.ErrorReason.ValueType(reason)
    return errors_pb2.ErrorReason.Name(value).removeprefix(_REASON_PREFIX)


class ExchangeError(Exception):
    """An error the exchange returned (or the SDK found before sending), with its reason."""

    def __init__(self, reason: str, message: str, *, metadata: dict[str, str] | None = None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})


class _FixedReasonError(ExchangeError):
    """An error the SDK raises itself, always with the same reason."""

    REASON: ClassVar[int]

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None):
        super().__init__(error_reason_name(self.REASON), message, metadata=metadata)


class PrecisionExceededError(_FixedReasonError, ValueError):
    """A decimal amount has more fractional digits than its asset's scale."""

    REASON = errors_pb2.ERROR_REASON_PRECISION_EXCEEDED


class AmountOutOfRangeError(_FixedReasonError, ValueError):
    """An amount does not fit the wire's int64."""

    REASON = errors_pb2.ERROR_REASON_AMOUNT_OUT_OF_RANGE
