"""The one shape of a refusal, in every service: a `google.rpc.Status` with a named reason.

Every refusal of the exchange leaves as the code the contract declares for its reason
(common/error_reasons.py), with `google.rpc.ErrorInfo{domain="exchange", reason, metadata}`
first in its details and, when the metadata names a `field`, a `google.rpc.BadRequest`
naming it (docs/adr/0003-errors.md). The core, the ledger, the gateway and streaming build
their statuses here, so a client reads every service the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from common.error_reasons import ERROR_DOMAIN, status_code_of


def error_status(reason: str, message: str, metadata: Mapping[str, str]) -> status_pb2.Status:
    """The `google.rpc.Status` of a refusal: its code, ErrorInfo, a BadRequest for a field."""
    details = [
        _packed(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    ]
    field = metadata.get("field")
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    return status_pb2.Status(code=status_code_of(reason), message=message, details=details)


def grpc_error_status(reason: str, message: str, metadata: Mapping[str, str]) -> grpc.Status:
    """`error_status` as the `grpc.Status` a servicer aborts with."""
    converted: grpc.Status = rpc_status.to_status(error_status(reason, message, metadata))
    return converted


def _packed(detail: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed
