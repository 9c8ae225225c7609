"""gRPC transports: signing, deadlines and safe retries around one channel to Envoy.

Guarantees:
- Each attempt is signed afresh (new X-TS; the edge spends a signature once) over the
  exact bytes sent: the request is serialized once and those bytes are both hashed and sent.
- Only UNAVAILABLE and DEADLINE_EXCEEDED are retried, at most ``RetryPolicy.attempts_max``
  attempts with capped exponential backoff. Every mutating call carries its idempotency key
  in the message (and as ``idempotency-key`` metadata), so a retry of a command the core did
  apply returns the original result instead of applying it twice.
- Failures surface as the typed exceptions of ``exchange_sdk.errors``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message
from grpc import aio

from exchange_sdk._protocol import RpcCall
from exchange_sdk.errors import ExchangeError, UnavailableError, from_rpc_error
from exchange_sdk.signing import ApiCredentials, RequestSigner

Metadata = tuple[tuple[str, str], ...]
IDEMPOTENCY_KEY_METADATA = "idempotency-key"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently an unacknowledged call is resent."""

    attempts_max: int = 4
    backoff_initial_seconds: float = 0.1
    backoff_max_seconds: float = 2.0
    backoff_multiplier: float = 2.0

    def backoff_seconds(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based), with full jitter."""
        ceiling = min(
            self.backoff_max_seconds,
            self.backoff_initial_seconds * self.backoff_multiplier ** (attempt - 1),
        )
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts_max=1)


def channel_options() -> list[tuple[str, Any]]:
    return [("grpc.enable_retries", 0), ("grpc.keepalive_time_ms", 30_000)]


def credentials_for(
    *, tls: bool, root_certificates: bytes | None
) -> grpc.ChannelCredentials | None:
    if not tls and root_certificates is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


class _Attempts:
    """The metadata and retry decisions shared by the sync and async transports."""

    def __init__(
        self, credentials: ApiCredentials | None, retry: RetryPolicy, timeout_seconds: float
    ) -> None:
        self.signer = None if credentials is None else RequestSigner(credentials)
        self.retry = retry
        self.timeout_seconds = timeout_seconds

    def metadata(self, call: RpcCall, payload: bytes) -> Metadata:
        signed: Metadata = ()
        if call.signed:
            signed = self.signed_metadata(call.method, payload)
        if call.idempotency_key:
            signed += ((IDEMPOTENCY_KEY_METADATA, call.idempotency_key),)
        return signed

    def signed_metadata(self, method: str, payload: bytes | None) -> Metadata:
        if self.signer is None:
            raise ExchangeError("API_KEY_MISSING", f"{method} needs an API key and secret")
        return self.signer.grpc_metadata(method, payload)

    def should_retry(self, error: ExchangeError, attempt: int) -> bool:
        return isinstance(error, UnavailableError) and attempt < self.retry.attempts_max


class Transport(Protocol):
    """What the sync client needs: one unary call (the testing fakes implement it too)."""

    def unary(self, call: RpcCall, *, timeout_seconds: float | None = None) -> Message: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def unary(self, call: RpcCall, *, timeout_seconds: float | None = None) -> Message: ...

    async def close(self) -> None: ...


class GrpcTransport:
    """Blocking gRPC to one endpoint (``host:port`` of Envoy's listener)."""

    def __init__(
        self,
        endpoint: str,
        *,
        credentials: ApiCredentials | None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        channel_credentials = credentials_for(tls=tls, root_certificates=root_certificates)
        if channel_credentials is None:
            self.channel = grpc.insecure_channel(endpoint, options=channel_options())
        else:
            self.channel = grpc.secure_channel(
                endpoint, channel_credentials, options=channel_options()
            )
        self.attempts = _Attempts(credentials, retry, timeout_seconds)
        self._sleep = sleep

    def unary(self, call: RpcCall, *, timeout_seconds: float | None = None) -> Message:
        payload = call.request.SerializeToString()
        method: Any = self.channel.unary_unary(
            call.method,
            request_serializer=None,
            response_deserializer=call.response_type.FromString,
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                response: Message = method(
                    payload,
                    metadata=self.attempts.metadata(call, payload),
                    timeout=timeout_seconds or self.attempts.timeout_seconds,
                )
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if not self.attempts.should_retry(error, attempt):
                    raise error from None
                self._sleep(self.attempts.retry.backoff_seconds(attempt))
                continue
            return response

    def open_stream(self, method: str, requests: Any, response_type: type[Message]) -> Any:
        """A bidirectional stream call (signed over the empty body) fed by `requests`."""
        callable_: Any = self.channel.stream_stream(
            method,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return callable_(requests, metadata=self.attempts.signed_metadata(method, None))

    def close(self) -> None:
        self.channel.close()


class AsyncGrpcTransport:
    """gRPC over asyncio (``grpc.aio``) to one endpoint."""

    def __init__(
        self,
        endpoint: str,
        *,
        credentials: ApiCredentials | None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout_seconds: float = 10.0,
    ) -> None:
        channel_credentials = credentials_for(tls=tls, root_certificates=root_certificates)
        if channel_credentials is None:
            self.channel = aio.insecure_channel(endpoint, options=channel_options())
        else:
            self.channel = aio.secure_channel(
                endpoint, channel_credentials, options=channel_options()
            )
        self.attempts = _Attempts(credentials, retry, timeout_seconds)

    async def unary(self, call: RpcCall, *, timeout_seconds: float | None = None) -> Message:
        payload = call.request.SerializeToString()
        method: Any = self.channel.unary_unary(
            call.method,
            request_serializer=None,
            response_deserializer=call.response_type.FromString,
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                response: Message = await method(
                    payload,
                    metadata=self.attempts.metadata(call, payload),
                    timeout=timeout_seconds or self.attempts.timeout_seconds,
                )
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if not self.attempts.should_retry(error, attempt):
                    raise error from None
                await asyncio.sleep(self.attempts.retry.backoff_seconds(attempt))
                continue
            return response

    def open_stream(self, method: str, response_type: type[Message]) -> Any:
        """A bidirectional stream call (signed over the empty body); write/read on it."""
        callable_: Any = self.channel.stream_stream(
            method,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return callable_(metadata=self.attempts.signed_metadata(method, None))

    async def close(self) -> None:
        await self.channel.close()
