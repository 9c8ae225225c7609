"""Kafka wire framing on top of kio's typed schemas.

A request is `size:int32 | header | body`; the header's version follows from whether the
API version is "flexible" (KIP-482). Responses are built from plain dicts by `build`, which
maps each key onto the field of the same name in kio's dataclass for the negotiated
version (keys a version lacks are dropped, so one handler serves every version).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import typing
from functools import cache
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32

API_VERSIONS = 18

# The versions this broker speaks, per API key: kio's range capped below the versions that
# switch to topic ids (Fetch 13, Produce 13) or batched group keys, which no client here needs;
# the transaction APIs stop below KIP-890's server-side verification versions
# (AddPartitionsToTxn 4, EndTxn 4, TxnOffsetCommit 4, InitProducerId 5).
SUPPORTED: dict[int, tuple[int, int]] = {
    0: (3, 9),  # Produce
    1: (4, 12),  # Fetch
    2: (1, 7),  # ListOffsets
    3: (1, 12),  # Metadata
    8: (2, 8),  # OffsetCommit
    9: (1, 7),  # OffsetFetch
    10: (0, 3),  # FindCoordinator
    11: (0, 7),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 4),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 5),  # DescribeGroups
    16: (0, 4),  # ListGroups
    18: (0, 3),  # ApiVersions
    19: (2, 5),  # CreateTopics
    20: (1, 6),  # DeleteTopics
    22: (0, 4),  # InitProducerId
    24: (0, 3),  # AddPartitionsToTxn
    25: (0, 3),  # AddOffsetsToTxn
    26: (0, 3),  # EndTxn
    28: (0, 3),  # TxnOffsetCommit
    32: (1, 4),  # DescribeConfigs
}


class ProtocolError(Exception):
    """The peer sent something this broker cannot decode; the connection is closed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    connection: int = 0  # which connection of the broker it came on


def decode_request(frame: bytes) -> Request:
    """Decode one frame (without its size prefix)."""
    api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame, 0)
    if api_key not in SUPPORTED:
        raise ProtocolError(f"unsupported api key {api_key}")
    low, high = SUPPORTED[api_key]
    if api_key == API_VERSIONS and api_version > high:
        # KIP-511: answer ApiVersions of a newer client with v0 and UNSUPPORTED_VERSION.
        return Request(api_key, api_version, correlation_id, None, None)
    if not low <= api_version <= high:
        raise ProtocolError(f"unsupported version {api_version} of api key {api_key}")
    schema = load_request_schema(api_key, api_version)
    header_type: type[Any] = RequestHeaderV2 if schema.__flexible__ else RequestHeaderV1
    header, header_size = entity_reader(header_type)(frame, 0)
    body, _ = entity_reader(schema)(frame, header_size)
    return Request(api_key, api_version, correlation_id, header.client_id, body)


def encode_response(request: Request, body: dict[str, Any]) -> bytes:
    """The framed response to `request` (size prefix included)."""
    version = request.api_version
    if request.api_key == API_VERSIONS and version > SUPPORTED[API_VERSIONS][1]:
        version = 0
    schema = load_response_schema(request.api_key, version)
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    # ApiVersions responses always carry header v0, so old clients can read them.
    flexible_header = schema.__flexible__ and request.api_key != API_VERSIONS
    if flexible_header:
        entity_writer(ResponseHeaderV1)(
            buffer, ResponseHeaderV1(correlation_id=i32(request.correlation_id))
        )
    else:
        entity_writer(ResponseHeaderV0)(
            buffer, ResponseHeaderV0(correlation_id=i32(request.correlation_id))
        )
    entity_writer(schema)(buffer, build(schema, body))
    frame = buffer.getbuffer()
    struct.pack_into(">i", frame, 0, len(frame) - 4)
    return bytes(frame)


@cache
def _field_types(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_type(annotation: Any) -> type[Any] | None:
    """The dataclass inside `annotation` (X, X | None, tuple[X, ...]), if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
        inner = typing.get_args(candidate)
        for item in inner:
            if dataclasses.is_dataclass(item) and isinstance(item, type):
                return item
    return None


def build(cls: Any, values: dict[str, Any]) -> Any:
    """An instance of kio dataclass `cls` from `values` (nested dicts and lists of dicts)."""
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                kwargs[field.name] = _empty(hints[field.name], field.metadata.get("kafka_type"))
            continue
        value = values[field.name]
        nested = _nested_type(hints[field.name])
        if nested is not None and isinstance(value, dict):
            value = build(nested, value)
        elif nested is not None and isinstance(value, list):
            value = tuple(build(nested, item) if isinstance(item, dict) else item for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        if field.metadata.get("kafka_type") == "error_code" and not isinstance(value, ErrorCode):
            value = ErrorCode(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def _empty(annotation: Any, kafka_type: str | None) -> Any:  # noqa: PLR0911 - one case per type
    """The zero value for a required field a handler left out (lists empty, null if nullable)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        return None
    origin = typing.get_origin(annotation) or annotation
    if origin is tuple:
        return ()
    if kafka_type == "error_code":
        return ErrorCode(0)
    if kafka_type in ("bool",) or annotation is bool:
        return False
    if kafka_type in ("string",) or (isinstance(origin, type) and issubclass(origin, str)):
        return ""
    if kafka_type in ("bytes", "records"):
        return b""
    if isinstance(origin, type) and issubclass(origin, datetime.timedelta):
        return datetime.timedelta(0)
    return 0
