"""The one mechanism by which a unary handler's exception becomes a named gRPC status.

Every service wraps its unary handlers with `answer_refusals(handler, status_of)`, where
`status_of` is that service's mapping of what it raises (its own error type, a dependency's
failure) to the status of common/error_status.py; anything it does not know is a bug, and
answers INTERNAL without the exception's text (docs/adr/0003-errors.md). The services differ
only in the mapping, so each defines a two-line decorator: `core.service.rpc.unary`,
`ledger.grpc_service._rpc`, `gateway.api_key_service.answers_edge_errors`,
`streaming.service.unary`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
from grpc import aio

Context: TypeAlias = aio.ServicerContext[Any, Any]
ServicerT = TypeVar("ServicerT")
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
StatusOf: TypeAlias = Callable[[Exception], grpc.Status]


def answer_refusals(
    handler: Callable[[ServicerT, RequestT, Any], Awaitable[ResponseT]],
    status_of: StatusOf,
) -> Callable[[ServicerT, RequestT, Any], Awaitable[ResponseT]]:
    """`handler`, ending the call with `status_of(error)` when it raises `error`."""

    @functools.wraps(handler)
    async def answered(self: ServicerT, request: RequestT, context: Context) -> ResponseT:
        try:
            return await handler(self, request, context)
        except aio.AbortError:
            raise  # the handler ended the call itself
        except Exception as error:
            await context.abort_with_status(status_of(error))
            raise  # unreachable: abort_with_status raises

    return answered
