"""The ledger's named errors: every refusal carries a reason from the contract's ErrorReason.

`Reason` values are the names of `exchange.common.v1.ErrorReason` without `ERROR_REASON_`
(a unit test checks each exists); the gRPC code comes from the proto's `(status_code)`
option, so contract, docs and service cannot disagree (docs/adr/0003-errors.md).
"""

from __future__ import annotations

from enum import StrEnum

from common.error_reasons import status_code_of


class Reason(StrEnum):
    FIELD_INVALID = "FIELD_INVALID"
    AMOUNT_OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE"
    PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"  # noqa: S105 (a reason, not a secret)
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    IDEMPOTENCY_KEY_MISSING = "IDEMPOTENCY_KEY_MISSING"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    ENTRY_UNBALANCED = "ENTRY_UNBALANCED"
    ENTRY_NOT_FOUND = "ENTRY_NOT_FOUND"
    CORRECTION_NOT_FOUND = "CORRECTION_NOT_FOUND"
    CORRECTION_NOT_APPROVED = "CORRECTION_NOT_APPROVED"
    CORRECTION_STATE_INVALID = "CORRECTION_STATE_INVALID"
    CORRECTION_SELF_APPROVAL = "CORRECTION_SELF_APPROVAL"
    OPERATOR_REQUIRED = "OPERATOR_REQUIRED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"
    INTERNAL = "INTERNAL"

    @property
    def status_code(self) -> int:
        """The google.rpc.Code number the contract declares for this reason."""
        return status_code_of(self.value)


class LedgerError(Exception):
    """A refusal with a named reason; nothing was applied."""

    def __init__(self, reason: Reason, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata


class LedgerInvariantError(RuntimeError):
    """The ledger's own invariant broke: a bug. Surfaces as INTERNAL; nothing is committed."""
