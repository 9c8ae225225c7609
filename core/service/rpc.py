"""The wrapper every unary handler runs in: any exception becomes a named gRPC status
(the mechanism is common/unary_handlers.py; the mapping is `service_error`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from common.unary_handlers import answer_refusals
from core.service.errors import grpc_status, service_error
from core.service.identity import Context

ServicerT = TypeVar("ServicerT")
RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)

Handler = Callable[[ServicerT, RequestT, Context], Awaitable[ResponseT]]


def status_of(error: Exception) -> grpc.Status:
    """The named status of anything a handler raised (unknown: INTERNAL, logged)."""
    return grpc_status(service_error(error))


def unary(
    handler: Handler[ServicerT, RequestT, ResponseT],
) -> Handler[ServicerT, RequestT, ResponseT]:
    """Run `handler`; a `ServiceError` (or anything else, as INTERNAL) aborts the call with its
    status and ErrorInfo."""
    return answer_refusals(handler, status_of)


async def abort(context: Context, error: Exception) -> Any:
    """Abort a streaming call with the named status of `error`."""
    await context.abort_with_status(status_of(error))
