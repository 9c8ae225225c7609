"""The contract's error reasons as the services read them: name, gRPC code, HTTP status.

Each `exchange.common.v1.ErrorReason` value declares the gRPC code it travels with (the
`(status_code)` option) and may declare an HTTP status (`(http_status)`); the tables here are
read from the generated descriptor once, at import, so code and contract cannot disagree
(docs/adr/0003-errors.md). No gRPC here: the ledger's pure posting rules name their reasons
through this module (common/error_status.py builds the status a service answers with).
"""

from __future__ import annotations

from typing import Final

from exchange.common.v1 import errors_pb2

ERROR_DOMAIN: Final = "exchange"
REASON_PREFIX: Final = "ERROR_REASON_"

_VALUES: Final = errors_pb2.ErrorReason.DESCRIPTOR.values
_NAME_BY_NUMBER: Final = {value.number: value.name.removeprefix(REASON_PREFIX) for value in _VALUES}
_CODE_BY_NAME: Final[dict[str, int]] = {
    value.name.removeprefix(REASON_PREFIX): value.GetOptions().Extensions[errors_pb2.status_code]
    for value in _VALUES
}
_HTTP_BY_NAME: Final[dict[str, int]] = {
    value.name.removeprefix(REASON_PREFIX): value.GetOptions().Extensions[errors_pb2.http_status]
    for value in _VALUES
}


def reason_name(reason: int) -> str:
    """The ErrorInfo.reason string of an `ErrorReason` number: its name without the prefix."""
    return _NAME_BY_NUMBER[reason]


def status_code_of(reason: str) -> int:
    """The google.rpc.Code number the contract declares for `reason` (e.g. `RATE_LIMITED` -> 8).

    An unknown name is a bug of the caller: ValueError."""
    code = _CODE_BY_NAME.get(reason)
    if code is None:
        message = f"{reason} is not an ErrorReason"
        raise ValueError(message)
    return code


def declared_http_status(reason: str) -> int:
    """The `(http_status)` option of `reason`, 0 where the contract declares none."""
    return _HTTP_BY_NAME[reason]
