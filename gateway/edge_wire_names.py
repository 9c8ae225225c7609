"""The names on the wire between a client, Envoy and the gateway (docs/api/authentication.md).

The identity headers the gateway's answer sets are common/identity_headers.py (the services
read them too); these are the edge's own.
"""

from __future__ import annotations

# What the client sends for the gateway to check (docs/api/authentication.md).
API_KEY_HEADER = "x-api-key"
TIMESTAMP_HEADER = "x-ts"
SIGNATURE_HEADER = "x-signature"
SIGNATURE_HEADERS = (
    API_KEY_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
    "idempotency-key",
    "content-type",
)
# What the gateway answers about the caller's rate limit.
RATE_LIMIT_LIMIT_HEADER = "x-ratelimit-limit"
RATE_LIMIT_REMAINING_HEADER = "x-ratelimit-remaining"
RATE_LIMIT_RESET_HEADER = "x-ratelimit-reset"
RATE_LIMIT_HEADERS = (RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_REMAINING_HEADER, RATE_LIMIT_RESET_HEADER)

AUTHZ_PATH_PREFIX = "/authz"
WEBSOCKET_PATH = "/ws"
