"""Request signing (docs/api/authentication.md), the client's half of the edge's check.

REST: ``X-SIGNATURE`` = lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of
``METHOD \\n PATH \\n X-TS \\n BODY``. Native gRPC: metadata ``x-api-key``, ``x-ts``,
``x-signature`` over ``POST \\n /<package>.<Service>/<Method> \\n X-TS \\n
hex(sha256(serialized request))``; a stream signs the SHA-256 of the empty string.
WebSocket ``authenticate``: the REST string of ``GET /ws`` with an empty body.

Invariant: one ``RequestSigner`` never issues the same X-TS twice (each stamp is at least
one millisecond after the previous one), so two identical requests sent in the same
millisecond still carry distinct signatures and the edge's replay check (REQUEST_REPLAYED)
only ever refuses a real replay.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

EMPTY_SHA256_HEX: Final = hashlib.sha256(b"").hexdigest()
WEBSOCKET_PATH: Final = "/ws"


def rest_canonical(*, method: str, path: str, timestamp_ms: str, body: bytes) -> bytes:
    """The bytes a REST request's signature covers."""
    return f"{method.upper()}\n{path}\n{timestamp_ms}\n".encode() + body


def grpc_canonical(*, method_path: str, timestamp_ms: str, message: bytes | None) -> bytes:
    """The bytes a native gRPC call's signature covers (`message` None for a stream)."""
    digest = EMPTY_SHA256_HEX if message is None else hashlib.sha256(message).hexdigest()
    return f"POST\n{method_path}\n{timestamp_ms}\n{digest}".encode()


def sign(secret: str, canonical: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of `canonical` keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ApiCredentials:
    """An API key: its id and secret (the secret never leaves the process)."""

    key_id: str
    secret: str = ""

    def __repr__(self) -> str:
        return f"ApiCredentials(key_id={self.key_id!r}, secret=***)"

    @classmethod
    def of(cls, key_id: str | None, secret: str | None) -> ApiCredentials | None:
        """Credentials when a key id is given (public market data needs none)."""
        return None if key_id is None else cls(key_id, secret or "")


@dataclass(frozen=True)
class WebSocketAuthentication:
    api_key: str
    timestamp_ms: int
    signature: str


class RequestSigner:
    """Signs requests with one API key; thread-safe; never reuses a timestamp."""

    def __init__(
        self, credentials: ApiCredentials, *, clock_ms: Callable[[], int] = _wall_clock_ms
    ) -> None:
        self.credentials = credentials
        self._clock_ms = clock_ms
        self._last_ms = 0
        self._lock = threading.Lock()

    def timestamp_ms(self) -> int:
        with self._lock:
            stamp = max(self._clock_ms(), self._last_ms + 1)
            self._last_ms = stamp
            return stamp

    def grpc_metadata(self, method_path: str, message: bytes | None) -> tuple[tuple[str, str], ...]:
        """``x-api-key``, ``x-ts``, ``x-signature`` for a native gRPC call."""
        stamp = str(self.timestamp_ms())
        canonical = grpc_canonical(method_path=method_path, timestamp_ms=stamp, message=message)
        return (
            ("x-api-key", self.credentials.key_id),
            ("x-ts", stamp),
            ("x-signature", sign(self.credentials.secret, canonical)),
        )

    def rest_headers(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        """``X-API-KEY``, ``X-TS``, ``X-SIGNATURE`` for a REST request through Envoy."""
        stamp = str(self.timestamp_ms())
        canonical = rest_canonical(method=method, path=path, timestamp_ms=stamp, body=body)
        return {
            "X-API-KEY": self.credentials.key_id,
            "X-TS": stamp,
            "X-SIGNATURE": sign(self.credentials.secret, canonical),
        }

    def websocket_authentication(self) -> WebSocketAuthentication:
        """The fields of the WebSocket ``authenticate`` request."""
        stamp = self.timestamp_ms()
        canonical = rest_canonical(
            method="GET", path=WEBSOCKET_PATH, timestamp_ms=str(stamp), body=b""
        )
        return WebSocketAuthentication(
            self.credentials.key_id, stamp, sign(self.credentials.secret, canonical)
        )
