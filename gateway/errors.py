"""Errors the edge answers itself, in the exchange's error model (docs/adr/0003-errors.md).

An `EdgeError` names an `ErrorReason`; its gRPC code is the one the contract declares for
that reason (`(status_code)` option in errors.proto) and its HTTP status follows from the
code by the standard mapping. REST clients get the same JSON shape the transcoder gives
for the services' errors (a `google.rpc.Status` with an `ErrorInfo` detail); gRPC clients
get `grpc-status`, `grpc-message` and `grpc-status-details-bin`, so `ErrorInfo.reason`
reads the same whichever way a client came in.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from common.error_reasons import declared_http_status, status_code_of
from common.error_status import error_status

HTTP_STATUS_OF_CODE: dict[int, int] = {
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


def http_status_of(reason: str) -> int:
    """The HTTP status of `reason`: its `(http_status)` option, else the standard mapping of
    its gRPC code (PAYLOAD_TOO_LARGE is 413, FIELD_INVALID 400)."""
    return declared_http_status(reason) or HTTP_STATUS_OF_CODE.get(status_code_of(reason), 500)


@dataclass(eq=False)
class EdgeError(Exception):
    """A request the edge refuses: a named reason, a message and optional context."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    # Extra response headers (Retry-After, X-RateLimit-*).
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        status_code_of(self.reason)  # an unknown reason is a bug here, not a client error

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    @property
    def grpc_code(self) -> int:
        return status_code_of(self.reason)

    @property
    def http_status(self) -> int:
        return http_status_of(self.reason)

    def status(self) -> status_pb2.Status:
        """The `google.rpc.Status` with this error's `ErrorInfo` detail."""
        return error_status(self.reason, str(self), self.metadata)

    def rest_body(self) -> bytes:
        """JSON as the transcoder renders a service's error (convert_grpc_status)."""
        return json.dumps(json_format.MessageToDict(self.status())).encode()

    def grpc_headers(self) -> dict[str, str]:
        """The status as gRPC trailers (Envoy sends them trailers-only to gRPC clients)."""
        details = base64.b64encode(self.status().SerializeToString()).decode().rstrip("=")
        return {
            "grpc-status": str(self.grpc_code),
            "grpc-message": _percent_encode(str(self)),
            "grpc-status-details-bin": details,
        }


def _percent_encode(text: str) -> str:
    """grpc-message is percent-encoded (gRPC over HTTP/2 spec): printable ASCII except %."""
    encoded = []
    for byte in text.encode():
        if 0x20 <= byte <= 0x7E and byte != ord("%"):
            encoded.append(chr(byte))
        else:
            encoded.append(f"%{byte:02X}")
    return "".join(encoded)
