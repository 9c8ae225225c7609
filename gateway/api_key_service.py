"""ApiKeyService (exchange.apikey.v1): operators create, list, get and revoke API keys.

Served by the gateway's gRPC server behind Envoy's `operate` routes; every call also
checks the operator identity Envoy forwards (`x-exchange-operator-id`) itself, so the
service refuses a call that did not come through the edge's authorization.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from exchange.apikey.v1 import apikey_pb2, apikey_pb2_grpc
from grpc_status import rpc_status
from redis.exceptions import RedisError

from common.identity_headers import OPERATOR_HEADER
from common.unary_handlers import answer_refusals
from gateway.api_keys import ApiKeyStore
from gateway.errors import EdgeError

Context = grpc.aio.ServicerContext[object, object]
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Self = TypeVar("_Self")
LOGGER = logging.getLogger("gateway")


def edge_status(error: Exception) -> grpc.Status:
    """The named status of what a gateway handler raised: an EdgeError's own, a Redis failure
    DEPENDENCY_UNAVAILABLE (named and retryable), anything else INTERNAL (a bug, logged)."""
    if not isinstance(error, EdgeError):
        if isinstance(error, RedisError):  # the key store is down
            error = EdgeError("DEPENDENCY_UNAVAILABLE", f"redis: {error}")
        else:
            LOGGER.error("gateway RPC failed", exc_info=error)
            error = EdgeError("INTERNAL", "internal error")
    converted: grpc.Status = rpc_status.to_status(error.status())
    return converted


def answers_edge_errors(
    method: Callable[[_Self, _Request, Context], Awaitable[_Response]],
) -> Callable[[_Self, _Request, Context], Awaitable[_Response]]:
    """An EdgeError raised by the handler ends the call with its status and ErrorInfo
    (common/unary_handlers.py)."""
    return answer_refusals(method, edge_status)


def operator_of(context: Context) -> str:
    """The operator id Envoy forwarded; OPERATOR_REQUIRED without one."""
    for name, value in context.invocation_metadata() or ():
        if name == OPERATOR_HEADER and isinstance(value, str) and value:
            return value
    raise EdgeError("OPERATOR_REQUIRED", "this call needs an operator identity")


class ApiKeyService(apikey_pb2_grpc.ApiKeyServiceServicer):
    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store

    @answers_edge_errors
    async def CreateApiKey(  # noqa: N802 - the generated servicer's method name
        self, request: apikey_pb2.CreateApiKeyRequest, context: Context
    ) -> apikey_pb2.CreateApiKeyResponse:
        record, secret = await self._store.create(
            request_id=request.request_id,
            account_id=request.account_id,
            label=request.label,
            permissions=list(request.permissions),
            rate_limit_per_minute=request.rate_limit_per_minute,
            created_by=operator_of(context),
        )
        return apikey_pb2.CreateApiKeyResponse(api_key=record.to_proto(), secret=secret)

    @answers_edge_errors
    async def GetApiKey(  # noqa: N802
        self, request: apikey_pb2.GetApiKeyRequest, context: Context
    ) -> apikey_pb2.GetApiKeyResponse:
        operator_of(context)
        record = await self._store.get(request.key_id)
        if record is None:
            raise EdgeError("API_KEY_NOT_FOUND", "no API key has this id")
        return apikey_pb2.GetApiKeyResponse(api_key=record.to_proto())

    @answers_edge_errors
    async def ListApiKeys(  # noqa: N802
        self, request: apikey_pb2.ListApiKeysRequest, context: Context
    ) -> apikey_pb2.ListApiKeysResponse:
        operator_of(context)
        records, next_token = await self._store.list(
            account_id=request.account_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return apikey_pb2.ListApiKeysResponse(
            api_keys=[record.to_proto() for record in records], next_page_token=next_token
        )

    @answers_edge_errors
    async def RevokeApiKey(  # noqa: N802
        self, request: apikey_pb2.RevokeApiKeyRequest, context: Context
    ) -> apikey_pb2.RevokeApiKeyResponse:
        record = await self._store.revoke(key_id=request.key_id, revoked_by=operator_of(context))
        return apikey_pb2.RevokeApiKeyResponse(api_key=record.to_proto())
