"""The identity headers: the trust boundary between the edge and the services (ADR 0006).

Envoy removes every copy of these a client sends before any filter runs
(gateway/envoy_config.py); the gateway's authorization answer is their only source. The
services trust them as set by the edge, and internal callers (the ledger's reconciliation,
the gateway's snapshot reader, the local stack's set-up) send the operator header
themselves on the internal network. Each name is defined here once and imported.
"""

from __future__ import annotations

from typing import Final

ACCOUNT_HEADER: Final = "x-exchange-account-id"  # the trader an API key belongs to
OPERATOR_HEADER: Final = "x-exchange-operator-id"  # an operator or an internal service
KEY_ID_HEADER: Final = "x-exchange-key-id"  # the API key that signed the request
IDEMPOTENCY_KEY_HEADER: Final = "x-exchange-idempotency-key"  # the client's Idempotency-Key
IDENTITY_HEADERS: Final = (ACCOUNT_HEADER, OPERATOR_HEADER, KEY_ID_HEADER, IDEMPOTENCY_KEY_HEADER)


def operator_metadata(operator_id: str) -> tuple[tuple[str, str]]:
    """gRPC metadata of an internal call made as operator `operator_id`."""
    return ((OPERATOR_HEADER, operator_id),)
