"""Request signing: the canonical strings and the HMAC (docs/api/authentication.md).

REST (the seeds' scheme): `X-SIGNATURE` = lower-case hex HMAC-SHA256, keyed with the
secret's UTF-8 bytes, of

    METHOD \\n PATH \\n X-TS \\n BODY

where METHOD is upper case, PATH is the request target as sent (path and, when there is
one, `?` and the query string), X-TS the decimal epoch milliseconds exactly as in the
header, and BODY the raw body bytes (empty for GET and DELETE without a body).

Native gRPC: the same three values travel as metadata (`x-api-key`, `x-ts`,
`x-signature`) and the canonical string is

    POST \\n /<package>.<Service>/<Method> \\n X-TS \\n <hex SHA-256 of the serialized request>

(the message bytes inside the gRPC frame, uncompressed). A streaming call signs the
SHA-256 of the empty string: its messages are not known when the call opens.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.edge_wire_names import API_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

EMPTY_SHA256_HEX = hashlib.sha256(b"").hexdigest()


def rest_canonical(*, method: str, path: str, timestamp_ms: str, body: bytes) -> bytes:
    """The bytes a REST request's signature covers."""
    head = f"{method.upper()}\n{path}\n{timestamp_ms}\n".encode()
    return head + body


def grpc_canonical(*, method_path: str, timestamp_ms: str, message: bytes | None) -> bytes:
    """The bytes a native gRPC call's signature covers (`message` None for a stream)."""
    digest = EMPTY_SHA256_HEX if message is None else hashlib.sha256(message).hexdigest()
    return f"POST\n{method_path}\n{timestamp_ms}\n{digest}".encode()


def sign(secret: str, canonical: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of `canonical` keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def signature_matches(secret: str, canonical: bytes, signature: str) -> bool:
    """Constant-time comparison of the expected signature with the one sent."""
    return hmac.compare_digest(sign(secret, canonical), signature.strip().lower())


def rest_headers(
    *, key_id: str, secret: str, method: str, path: str, timestamp_ms: int, body: bytes
) -> dict[str, str]:
    """X-API-KEY, X-TS and X-SIGNATURE for a REST request (clients, tests, benchmarks)."""
    stamp = str(timestamp_ms)
    canonical = rest_canonical(method=method, path=path, timestamp_ms=stamp, body=body)
    return {"X-API-KEY": key_id, "X-TS": stamp, "X-SIGNATURE": sign(secret, canonical)}


def grpc_metadata(
    *, key_id: str, secret: str, method_path: str, timestamp_ms: int, message: bytes | None
) -> tuple[tuple[str, str], ...]:
    """x-api-key, x-ts and x-signature metadata for a native gRPC call."""
    stamp = str(timestamp_ms)
    canonical = grpc_canonical(method_path=method_path, timestamp_ms=stamp, message=message)
    return (
        (API_KEY_HEADER, key_id),
        (TIMESTAMP_HEADER, stamp),
        (SIGNATURE_HEADER, sign(secret, canonical)),
    )
