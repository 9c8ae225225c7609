"""Hostile gRPC requests generated from the descriptors: for every method of a service, bytes
that are not a message of its request type (a string field holding invalid UTF-8, a
truncated length, an invalid tag, a wrong wire type for a known field) and an empty message.
A server of the exchange must answer each with a status carrying an ErrorInfo.reason and
never UNKNOWN or INTERNAL (ADR 0015)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor, descriptor_pool
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

_LENGTH_DELIMITED = 2
# What a server must never answer client input with.
SERVER_FAULTS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})


@dataclass(frozen=True)
class Outcome:
    method: str
    case: str
    code: grpc.StatusCode
    reason: str


def is_fault(outcome: Outcome) -> bool:
    """UNKNOWN/INTERNAL, or a refusal without an ErrorInfo.reason. (Bytes a lenient parser
    reads as an empty message may be answered OK.)"""
    if outcome.code in SERVER_FAULTS:
        return True
    return outcome.code is not grpc.StatusCode.OK and not outcome.reason


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def hostile_messages(request: descriptor.Descriptor) -> Iterator[tuple[str, bytes]]:
    """(case, bytes) for `request`: malformed for every type, invalid UTF-8 per string field."""
    yield "truncated-length", b"\x0a\x05ab"
    yield "invalid-tag", b"\x00\x01"
    yield "truncated-varint", b"\x08\xff\xff"
    for field in request.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            yield (
                f"invalid-utf8:{field.name}",
                _tag(field.number, _LENGTH_DELIMITED) + b"\x02\xff\xfe",
            )
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            yield (
                f"bad-submessage:{field.name}",
                _tag(field.number, _LENGTH_DELIMITED) + b"\x02\x0a\x05",
            )


def error_reason(error: aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


# grpc.aio's client reports a write that lost the race with the server's early status as
# INTERNAL "Internal error from Core", hiding the status the server sent (grpc/grpc#36066,
# fix proposed in grpc/grpc#43486): a request stream the server refused before reading it
# (StreamOrders without an identity) showed up here as a server fault now and then. Such an
# answer is asked again; the server's own INTERNAL never carries that text.
_CLIENT_WRITE_RACE = "Internal error from Core"
_RACE_ATTEMPTS = 5


async def _call(
    channel: aio.Channel, method: descriptor.MethodDescriptor, payload: bytes, timeout: float
) -> tuple[grpc.StatusCode, str]:
    for _attempt in range(_RACE_ATTEMPTS):
        code, reason, details = await _call_once(channel, method, payload, timeout)
        if not (method.client_streaming and code == grpc.StatusCode.INTERNAL):
            break
        if details != _CLIENT_WRITE_RACE:
            break
    return code, reason


async def _call_once(
    channel: aio.Channel, method: descriptor.MethodDescriptor, payload: bytes, timeout: float
) -> tuple[grpc.StatusCode, str, str]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            stream: aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
            async for _ in stream(iter([payload]), timeout=timeout):
                pass
        elif method.server_streaming:
            responses: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            async for _ in responses(payload, timeout=timeout):
                pass
        else:
            unary: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            await unary(payload, timeout=timeout)
    except aio.AioRpcError as error:
        return error.code(), error_reason(error), error.details() or ""
    return grpc.StatusCode.OK, "", ""


async def probe_service(
    channel: aio.Channel,
    service: str,
    *,
    pool: descriptor_pool.DescriptorPool | None = None,
    timeout: float = 10.0,
) -> list[Outcome]:
    """Every hostile message of every method of `service` sent once; what came back."""
    found = (pool or descriptor_pool.Default()).FindServiceByName(service)
    outcomes: list[Outcome] = []
    for method in found.methods:
        for case, payload in hostile_messages(method.input_type):
            code, reason = await _call(channel, method, payload, timeout)
            outcomes.append(Outcome(method.full_name, case, code, reason))
    return outcomes


def probe(target: str, services: list[str]) -> list[Outcome]:
    async def run() -> list[Outcome]:
        async with aio.insecure_channel(target) as channel:
            results: list[Outcome] = []
            for service in services:
                results += await probe_service(channel, service)
            return results

    return asyncio.run(run())
