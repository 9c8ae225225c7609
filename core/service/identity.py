"""Who is calling (docs/adr/0006): the edge puts the caller's identity into metadata.

Envoy's external authorization (the gateway) sets `x-exchange-account-id` for traders and
`x-exchange-operator-id` for operators, and strips any copy a client sends. The service trusts
these headers because it listens only behind Envoy (or on loopback / the internal network).
No trading request carries an account id; traders' calls without the header are
UNAUTHENTICATED (`API_KEY_MISSING`), admin calls without an operator PERMISSION_DENIED
(`OPERATOR_REQUIRED`).
"""

from __future__ import annotations

from typing import Any

from exchange.common.v1 import errors_pb2
from grpc import aio

from common.identity_headers import ACCOUNT_HEADER, OPERATOR_HEADER
from core.contracts import validation
from core.contracts.errors import RequestError
from core.service.errors import ServiceError

Context = aio.ServicerContext[Any, Any]


def _header(context: Context, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else ""
    return ""


def _identity(context: Context, header: str, reason: errors_pb2.ErrorReason.ValueType) -> str:
    value = _header(context, header)
    if not value:
        raise ServiceError(reason, f"no {header}: call through the edge")
    try:
        return validation.account_id(value, header)
    except RequestError as error:
        raise ServiceError(reason, error.message) from None


def caller_account(context: Context) -> str:
    """The authenticated trader's account id."""
    return _identity(context, ACCOUNT_HEADER, errors_pb2.ERROR_REASON_API_KEY_MISSING)


def caller_operator(context: Context) -> str:
    """The operator's id; admin calls require it."""
    return _identity(context, OPERATOR_HEADER, errors_pb2.ERROR_REASON_OPERATOR_REQUIRED)


def optional_operator(context: Context) -> str:
    """The operator's id if the caller is an operator, else ''."""
    return _header(context, OPERATOR_HEADER)
