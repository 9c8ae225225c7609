"""Request bytes that do not decode are the client's fault: INVALID_ARGUMENT, never UNKNOWN.

grpc.aio answers a request its deserializer cannot parse (invalid UTF-8 in a string field,
a truncated varint, a wrong wire type) with UNKNOWN "Unexpected <class DecodeError>". Every
server of the exchange (core, ledger, gateway, streaming) installs `DecodeErrorInterceptor`,
which wraps each method's deserializer: bytes that do not decode become an `Undecodable`
marker, and the wrapped behaviour answers it with INVALID_ARGUMENT and an ErrorInfo
(`ENCODING_INVALID` for invalid UTF-8, `MALFORMED_REQUEST` otherwise) before the servicer
runs (docs/adr/0015-hostile-input-at-the-edge.md).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf import message
from grpc import aio

from common.error_status import grpc_error_status

if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:  # grpc's class is generic only in its stubs
    Handler = grpc.RpcMethodHandler


@dataclass(frozen=True)
class Undecodable:
    """What the deserializer returns for bytes that are not a message of the method's type."""

    reason: str
    message: str


class UndecodableRequest(Exception):  # noqa: N818  (a request, not an error of ours)
    """Raised by the request iterator of a streaming method at a message that does not decode.

    It is raised in whatever task reads the stream (a servicer may read it in a task of its
    own) and answered by the method's wrapper in the handler's task, so the refusal is one
    status, sent once, whoever read the message."""

    def __init__(self, undecodable: Undecodable) -> None:
        super().__init__(undecodable.message)
        self.undecodable = undecodable


def undecodable_status(undecodable: Undecodable) -> grpc.Status:
    message = f"{undecodable.reason}: {undecodable.message}"
    return grpc_error_status(undecodable.reason, message, {})


def guarded_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize`, returning `Undecodable` instead of raising on bytes it cannot parse."""

    def guarded(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (message.DecodeError, UnicodeDecodeError, ValueError) as error:
            text = str(error)
            invalid_text = isinstance(error, UnicodeDecodeError) or "UTF-8" in text
            reason = "ENCODING_INVALID" if invalid_text else "MALFORMED_REQUEST"
            return Undecodable(reason, "the request message does not decode")

    return guarded


Context = aio.ServicerContext[Any, Any]


async def _refuse(context: Context, undecodable: Undecodable) -> None:
    await context.abort_with_status(undecodable_status(undecodable))


def _unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A unary request: a coroutine, or an async generator for a response stream (grpc.aio
    tells the two apart by the function's kind, so the wrapper keeps the behaviour's)."""
    if inspect.isasyncgenfunction(behavior):

        async def streamed(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await _refuse(context, request)
            async for response in behavior(request, context):
                yield response

        return streamed

    async def guarded(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        return await behavior(request, context)

    return guarded


async def _checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise UndecodableRequest(request)
        yield request


def _stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A request stream whose messages are checked as the servicer reads them; the first
    that does not decode ends the call with INVALID_ARGUMENT (the servicer must let
    `UndecodableRequest` out, from whichever task read the message)."""
    if inspect.isasyncgenfunction(behavior):

        async def streamed(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(_checked_requests(requests), context):
                    yield response
            except UndecodableRequest as refused:
                await _refuse(context, refused.undecodable)

        return streamed

    async def guarded(requests: AsyncIterator[Any], context: Context) -> Any:
        try:
            return await behavior(_checked_requests(requests), context)
        except UndecodableRequest as refused:
            await _refuse(context, refused.undecodable)

    return guarded


def guarded_handler(handler: Handler) -> Handler:
    """`handler` with its deserializer guarded and its behaviour refusing `Undecodable`."""
    if handler.request_deserializer is None:
        return handler
    replaced: dict[str, Any] = {
        "request_deserializer": guarded_deserializer(handler.request_deserializer)
    }
    if handler.unary_unary is not None:
        replaced["unary_unary"] = _unary_request(handler.unary_unary)
    elif handler.unary_stream is not None:
        replaced["unary_stream"] = _unary_request(handler.unary_stream)
    elif handler.stream_unary is not None:
        replaced["stream_unary"] = _stream_request(handler.stream_unary)
    elif handler.stream_stream is not None:
        replaced["stream_stream"] = _stream_request(handler.stream_stream)
    replace: Callable[..., Handler] = handler._replace  # type: ignore[attr-defined]
    return replace(**replaced)


class DecodeErrorInterceptor(aio.ServerInterceptor):
    """Installs `guarded_handler` on every method of the server (once per method)."""

    def __init__(self) -> None:
        self._guarded: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is not None:
            return guarded
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        guarded = self._guarded[method] = guarded_handler(handler)
        return guarded
