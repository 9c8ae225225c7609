"""The names on the wire between a client, Envoy and the gateway (docs/api/authentication.md).

The identity headers the gateway's answer sets are common/identity_headers.py (the services
read them too); these are the edge's own.
"""

from __future__ import annotations

# What the client sends for the gateway to check (docs/api/authentication.md).
SIGNATURE_HEADERS = ("x-api-key", "x-ts", "x-signature", "idempotency-key", "content-type")
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

AUTHZ_PATH_PREFIX = "/authz"
WEBSOCKET_PATH = "/ws"
