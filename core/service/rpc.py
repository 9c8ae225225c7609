"""The wrapper every unary handler runs in: any exception becomes a named gRPC status."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from core.service.errors import grpc_status, service_error
from core.service.identity import Context

ServicerT = TypeVar("ServicerT")
RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)

Handler = Callable[[ServicerT, RequestT, Context], Awaitable[ResponseT]]


def unary(
    handler: Handler[ServicerT, RequestT, ResponseT],
) -> Handler[ServicerT, RequestT, ResponseT]:
    """Run `handler`; a `ServiceError` (or anything else, as INTERNAL) aborts the call with its
    status and ErrorInfo."""

    @functools.wraps(handler)
    async def run(self: ServicerT, request: RequestT, context: Context) -> ResponseT:
        try:
            return await handler(self, request, context)
        except Exception as error:
            await context.abort_with_status(grpc_status(service_error(error)))
            raise  # unreachable: abort_with_status raises

    return run


async def abort(context: Context, error: Exception) -> Any:
    """Abort a streaming call with the named status of `error`."""
    await context.abort_with_status(grpc_status(service_error(error)))
