"""The check behind Envoy's ext_authz: who is calling, may they, and is the call fresh.

Order of the checks (each failure its own reason, docs/api/authentication.md):
 1. X-API-KEY present (API_KEY_MISSING), known (API_KEY_UNKNOWN), not revoked
    (API_KEY_REVOKED) - all 401;
 2. X-TS within +-EDGE_AUTH_SKEW_SEC of the gateway's clock (TIMESTAMP_OUT_OF_WINDOW, 401);
 3. X-SIGNATURE is the HMAC of the canonical request (SIGNATURE_INVALID, 401);
 4. the signature was not seen before (REQUEST_REPLAYED, 401): `SET NX` with the replay
    TTL, written only for a valid signature so nobody can burn another's signature;
 5. the key's per-minute window is not used up (RATE_LIMITED, 429 with Retry-After and
    X-RateLimit-*); every authenticated request counts;
 6. the key has the route's permission (PERMISSION_DENIED / OPERATOR_REQUIRED, 403);
 7. REST only: the body and query fit the RPC's request type (FIELD_INVALID, 400);
 8. POST/DELETE over REST carry an Idempotency-Key (IDEMPOTENCY_KEY_MISSING, 400); a
    `request_id` in the body or query must equal it (ADR 0006; FIELD_INVALID naming
    `request_id`, 400: the transcoder cannot copy a header into the message, so the client
    sends both and the gateway holds them to agree); and a
    key already bound to another request of the account is refused
    (IDEMPOTENCY_KEY_REUSED, 409). The binding lives in Redis for EDGE_IDEMPOTENCY_TTL_SEC,
    so it survives a restart of the gateway.
An allowed call goes on with the identity headers Envoy forwards to the service.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exchange.apikey.v1 import apikey_pb2
from redis.asyncio import Redis

from common.identifiers import ID_CHARACTERS, is_identifier
from common.identity_headers import (
    ACCOUNT_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    KEY_ID_HEADER,
    OPERATOR_HEADER,
)
from gateway.api_keys import ApiKeyRecord, ApiKeyStore
from gateway.edge_wire_names import (
    API_KEY_HEADER,
    RATE_LIMIT_LIMIT_HEADER,
    RATE_LIMIT_REMAINING_HEADER,
    RATE_LIMIT_RESET_HEADER,
)
from gateway.errors import EdgeError
from gateway.request_validation import RestRequestValidator
from gateway.rpc_catalogue import (
    Access,
)
from gateway.settings import GatewaySettings
from gateway.signing import grpc_canonical, rest_canonical, signature_matches

_PERMISSION_OF_ACCESS = {
    Access.READ: apikey_pb2.PERMISSION_READ,
    Access.TRADE: apikey_pb2.PERMISSION_TRADE,
    Access.WITHDRAW: apikey_pb2.PERMISSION_WITHDRAW,
    Access.OPERATE: apikey_pb2.PERMISSION_OPERATE,
}
_IDEMPOTENT_METHODS = frozenset({"POST", "DELETE"})
IDEMPOTENCY_KEY_LENGTH_MAX = 128
_WINDOW_MS = 60_000
_GRPC_FRAME_HEADER_BYTES = 5


@dataclass(frozen=True)
class CheckRequest:
    """What Envoy sends about one request: the original method, target and body."""

    access: Access
    method: str
    # Path and query exactly as the client sent them (Envoy-normalized).
    target: str
    # Lower-case header names.
    headers: Mapping[str, str]
    body: bytes

    @property
    def grpc(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/grpc")


@dataclass(frozen=True)
class Allowed:
    """Headers Envoy adds to the request to the service, and to the client's response."""

    upstream_headers: dict[str, str]
    client_headers: dict[str, str] = field(default_factory=dict)


class Authorizer:
    def __init__(
        self,
        *,
        redis: Redis,
        keys: ApiKeyStore,
        settings: GatewaySettings,
        validator: RestRequestValidator,
        clock_ms: Callable[[], int],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._validator = validator
        self._clock_ms = clock_ms

    async def check(self, request: CheckRequest) -> Allowed:
        """Allowed with the identity headers, or raises the EdgeError to answer."""
        key, rate_headers = await self.authenticate(
            key_id=request.headers.get(API_KEY_HEADER, ""),
            timestamp_text=request.headers.get("x-ts", ""),
            signature=request.headers.get("x-signature", ""),
            canonical=lambda: self._canonical(request),
        )
        self._authorize(key, request.access)
        if not request.grpc:
            validated = self._validator.validate_request(
                method=request.method, target=request.target, body=request.body
            )
            _check_request_id_agrees(request, validated.request_id)
        upstream = self._identity(key, request.access)
        idempotency_key = await self._bind_idempotency_key(key, request)
        if idempotency_key:
            upstream[IDEMPOTENCY_KEY_HEADER] = idempotency_key
        return Allowed(upstream_headers=upstream, client_headers=rate_headers)

    async def authenticate(
        self,
        *,
        key_id: str,
        timestamp_text: str,
        signature: str,
        canonical: Callable[[], bytes],
    ) -> tuple[ApiKeyRecord, dict[str, str]]:
        """Checks 1-5 (key, clock window, signature over `canonical()`, replay, rate limit);
        the key and the rate-limit headers. Also used by the WebSocket's Authenticate."""
        key = await self._key(key_id)
        timestamp = self._timestamp(timestamp_text)
        if not signature_matches(self._keys.secret_of(key), canonical(), signature):
            raise EdgeError("SIGNATURE_INVALID", "the signature does not match the request")
        rate_headers = await self._admit(key, signature.strip().lower(), timestamp)
        return key, rate_headers

    async def _key(self, key_id: str) -> ApiKeyRecord:
        if not key_id:
            raise EdgeError("API_KEY_MISSING", "X-API-KEY is required")
        key = await self._keys.get(key_id)
        if key is None:
            raise EdgeError("API_KEY_UNKNOWN", "no API key has this id")
        if key.revoked:
            raise EdgeError("API_KEY_REVOKED", "the API key was revoked")
        return key

    def _timestamp(self, text: str) -> int:
        skew_ms = self._settings.auth_skew_seconds * 1000
        if not (text.isascii() and text.isdigit()) or len(text) > 16:
            raise EdgeError("TIMESTAMP_OUT_OF_WINDOW", "X-TS must be epoch milliseconds")
        timestamp = int(text)
        now = self._clock_ms()
        if abs(now - timestamp) > skew_ms:
            raise EdgeError(
                "TIMESTAMP_OUT_OF_WINDOW",
                f"X-TS is more than {self._settings.auth_skew_seconds}s from the server's clock",
                metadata={"server_time_ms": str(now)},
            )
        return timestamp

    def _canonical(self, request: CheckRequest) -> bytes:
        timestamp = request.headers.get("x-ts", "")
        if not request.grpc:
            return rest_canonical(
                method=request.method,
                path=request.target,
                timestamp_ms=timestamp,
                body=request.body,
            )
        return grpc_canonical(
            method_path=request.target.split("?", 1)[0],
            timestamp_ms=timestamp,
            message=_grpc_message(request.body),
        )

    async def _admit(self, key: ApiKeyRecord, signature: str, timestamp_ms: int) -> dict[str, str]:
        """Replay mark and rate-limit window in one round trip; the rate headers."""
        now = self._clock_ms()
        window = now // _WINDOW_MS
        window_key = f"ratelimit:{key.key_id}:{window}"
        async with self._redis.pipeline(transaction=False) as pipeline:
            pipeline.set(
                f"replay:{key.key_id}:{signature}",
                str(timestamp_ms),
                nx=True,
                ex=self._settings.replay_ttl_seconds,
            )
            pipeline.incr(window_key)
            pipeline.expire(window_key, _WINDOW_MS // 1000 + 1, nx=True)
            first_use, used, _ = await pipeline.execute()
        if not first_use:
            raise EdgeError("REQUEST_REPLAYED", "this signature was used before")
        limit = key.rate_limit_per_minute or self._settings.rate_limit_per_minute
        reset_ms = (window + 1) * _WINDOW_MS
        headers = {
            RATE_LIMIT_LIMIT_HEADER: str(limit),
            RATE_LIMIT_REMAINING_HEADER: str(max(0, limit - int(used))),
            RATE_LIMIT_RESET_HEADER: str(reset_ms // 1000),
        }
        if int(used) > limit:
            retry_after_seconds = max(1, -(-(reset_ms - now) // 1000))
            raise EdgeError(
                "RATE_LIMITED",
                f"over {limit} requests per minute for this key",
                metadata={"limit_per_minute": str(limit)},
                headers={**headers, "retry-after": str(retry_after_seconds)},
            )
        return headers

    @staticmethod
    def _authorize(key: ApiKeyRecord, access: Access) -> None:
        needed = _PERMISSION_OF_ACCESS[access]
        if needed in key.permissions:
            return
        if access is Access.OPERATE:
            raise EdgeError("OPERATOR_REQUIRED", "this call needs an operator key")
        raise EdgeError(
            "PERMISSION_DENIED",
            "the API key lacks the permission for this call",
            metadata={"permission": apikey_pb2.Permission.Name(needed)},
        )

    @staticmethod
    def _identity(key: ApiKeyRecord, access: Access) -> dict[str, str]:
        identity = OPERATOR_HEADER if access is Access.OPERATE else ACCOUNT_HEADER
        return {identity: key.account_id, KEY_ID_HEADER: key.key_id}

    async def _bind_idempotency_key(self, key: ApiKeyRecord, request: CheckRequest) -> str:
        idempotency_key = request.headers.get("idempotency-key", "").strip()
        if not idempotency_key:
            if not request.grpc and request.method in _IDEMPOTENT_METHODS:
                raise EdgeError(
                    "IDEMPOTENCY_KEY_MISSING", f"{request.method} needs an Idempotency-Key header"
                )
            return ""
        _check_idempotency_key(idempotency_key)
        fingerprint = hashlib.sha256(
            f"{request.method}\n{request.target}\n".encode() + request.body
        ).hexdigest()
        earlier = await self._redis.set(
            f"idempotency:{key.account_id}:{idempotency_key}",
            fingerprint,
            nx=True,
            get=True,
            ex=self._settings.idempotency_ttl_seconds,
        )
        if earlier is not None and earlier != fingerprint:
            raise EdgeError(
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with another request",
                metadata={"idempotency_key": idempotency_key},
            )
        return idempotency_key


def _check_idempotency_key(text: str) -> None:
    """ENCODING_INVALID for bytes that were not UTF-8, FIELD_INVALID unless 1..128
    characters of the identifier set: the key must equal a `request_id`, which the
    services hold to that set (core/contracts/validation.py)."""
    if not _was_utf8(text):
        raise EdgeError(
            "ENCODING_INVALID", "Idempotency-Key is not UTF-8", {"field": "Idempotency-Key"}
        )
    if len(text) > IDEMPOTENCY_KEY_LENGTH_MAX or not is_identifier(text):
        raise EdgeError(
            "FIELD_INVALID",
            f"Idempotency-Key must be 1..{IDEMPOTENCY_KEY_LENGTH_MAX} characters of "
            f"[{ID_CHARACTERS}]",
            metadata={"field": "Idempotency-Key"},
        )


def _was_utf8(header: str) -> bool:
    """Whether the header's bytes were UTF-8. The HTTP server hands header values over as
    Latin-1 (one character per byte), as U+FFFD or as surrogate escapes: each is checked,
    so two different invalid keys can never be read as the same one."""
    if any(character == "\ufffd" or "\udc80" <= character <= "\udcff" for character in header):
        return False
    if header.isascii():
        return True
    try:
        header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return max(map(ord, header)) > 0xFF  # already decoded text, not bytes as Latin-1
    return True


def _grpc_message(body: bytes) -> bytes:
    """The one message of a unary gRPC request body (5-byte frame header, then the bytes)."""
    if not body:
        return b""
    if len(body) < _GRPC_FRAME_HEADER_BYTES:
        raise EdgeError("FIELD_INVALID", "the gRPC frame is truncated")
    compressed = body[0]
    length = int.from_bytes(body[1:_GRPC_FRAME_HEADER_BYTES], "big")
    if compressed:
        raise EdgeError("FIELD_INVALID", "compressed gRPC messages are not accepted at the edge")
    if length != len(body) - _GRPC_FRAME_HEADER_BYTES:
        raise EdgeError("FIELD_INVALID", "a unary gRPC call carries exactly one message")
    return body[_GRPC_FRAME_HEADER_BYTES:]


def _check_request_id_agrees(request: CheckRequest, request_id: str) -> None:
    """ADR 0006: a REST mutation's `request_id` and its Idempotency-Key must be the same."""
    if request.method not in _IDEMPOTENT_METHODS or not request_id:
        return
    header = request.headers.get("idempotency-key", "").strip()
    if header and header != request_id:
        raise EdgeError(
            "FIELD_INVALID",
            "request_id must equal the Idempotency-Key header",
            {"field": "request_id"},
        )
