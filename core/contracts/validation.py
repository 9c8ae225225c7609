"""Field checks shared by every request conversion, and the limits they enforce.

Every check raises `RequestError` with a named reason and the field's name; nothing that
fails here is ever logged or applied. Limits (put a limit on everything):

| field | limit |
|---|---|
| client_order_id | 1..64 characters |
| request_id, transfer_id | 1..128 characters |
| account_id (metadata or request) | 1..128 characters |
| symbol | 1..32 characters (the engine's SYMBOL_LENGTH_MAX) |
| asset code | 1..16 characters (the engine's ASSET_CODE_LENGTH_MAX) |
| memo, reference, reason texts | at most 512 characters |
| order_id | a decimal integer in 1..2^63-1 |

Identifiers (client_order_id, request_id, transfer_id, account_id, symbol, asset code) are
printable ASCII from `ID_CHARACTERS` only: letters, digits and `.`, `_`, `:`, `-`. Free
texts (memo, reference, reason) may hold any Unicode but no control character (category
Cc: NUL, CR, LF, ESC, ...): a NUL could not be stored by PostgreSQL, the others forge log
lines (docs/adr/0015-hostile-input-at-the-edge.md).
"""

from __future__ import annotations

import unicodedata
from typing import Final

from exchange.common.v1 import errors_pb2

from common import page_tokens
from common.identifiers import ID_CHARACTERS, is_identifier
from core.contracts.errors import ErrorReason, RequestError, field_invalid
from core.engine.market import ASSET_CODE_LENGTH_MAX, SYMBOL_LENGTH_MAX
from core.engine.money import INT64_MAX

CLIENT_ORDER_ID_LENGTH_MAX: Final = 64
REQUEST_ID_LENGTH_MAX: Final = 128
TRANSFER_ID_LENGTH_MAX: Final = 128
ACCOUNT_ID_LENGTH_MAX: Final = 128
TEXT_LENGTH_MAX: Final = 512
ORDER_ID_DIGITS_MAX: Final = 19

# The characters of every identifier (docs/api/errors.md, FIELD_INVALID).

_KEY_MISSING: Final = errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_MISSING
_FIELD_INVALID: Final = errors_pb2.ERROR_REASON_FIELD_INVALID


def required_text(
    value: str, field: str, length_max: int, *, missing: ErrorReason = _FIELD_INVALID
) -> str:
    """A non-empty string of at most `length_max` characters, none of them a control."""
    if not value:
        raise RequestError(missing, f"{field} is required", field=field)
    return optional_text(value, field, length_max)


def identifier(
    value: str, field: str, length_max: int, *, missing: ErrorReason = _FIELD_INVALID
) -> str:
    """A required identifier: 1..`length_max` characters of `ID_CHARACTERS`."""
    if not value:
        raise RequestError(missing, f"{field} is required", field=field)
    if len(value) > length_max:
        raise field_invalid(field, f"{field} is longer than {length_max} characters")
    if not is_identifier(value):
        raise field_invalid(field, f"{field} may hold only the characters [{ID_CHARACTERS}]")
    return value


def optional_identifier(value: str, field: str, length_max: int) -> str:
    return identifier(value, field, length_max) if value else value


def idempotency_key(value: str, field: str, length_max: int = REQUEST_ID_LENGTH_MAX) -> str:
    """A required idempotency key: missing is IDEMPOTENCY_KEY_MISSING."""
    return identifier(value, field, length_max, missing=_KEY_MISSING)


def optional_text(value: str, field: str, length_max: int = TEXT_LENGTH_MAX) -> str:
    """At most `length_max` characters, none of them a control character (category Cc)."""
    if len(value) > length_max:
        raise field_invalid(field, f"{field} is longer than {length_max} characters")
    if any(unicodedata.category(character) == "Cc" for character in value):
        raise field_invalid(field, f"{field} holds a control character")
    return value


def symbol(value: str, field: str = "symbol") -> str:
    return identifier(value, field, SYMBOL_LENGTH_MAX)


def optional_symbol(value: str, field: str = "symbol") -> str:
    return optional_identifier(value, field, SYMBOL_LENGTH_MAX)


def asset(value: str, field: str = "asset") -> str:
    return identifier(value, field, ASSET_CODE_LENGTH_MAX)


def optional_asset(value: str, field: str = "asset") -> str:
    return optional_identifier(value, field, ASSET_CODE_LENGTH_MAX)


def account_id(value: str, field: str = "account_id") -> str:
    return identifier(value, field, ACCOUNT_ID_LENGTH_MAX)


def positive_amount(value: int, field: str, *, reason: ErrorReason = _FIELD_INVALID) -> int:
    if value <= 0:
        raise RequestError(reason, f"{field} must be positive", field=field)
    return value


def order_id(value: str, field: str = "order_id") -> int:
    """An order id as the contract carries it: a decimal string of a positive int64."""
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > ORDER_ID_DIGITS_MAX
        or value[0] == "0"
    ):
        raise field_invalid(field, f"{field} must be a positive decimal integer")
    number = int(value)
    if number > INT64_MAX:
        raise field_invalid(field, f"{field} is out of range")
    return number


def order_reference(order_id_text: str, client_order_id: str) -> tuple[int, str]:
    """Exactly one of order_id and client_order_id: (order id or 0, client order id or '')."""
    if order_id_text and client_order_id:
        raise field_invalid("order_id", "set either order_id or client_order_id, not both")
    if order_id_text:
        return order_id(order_id_text), ""
    if client_order_id:
        return 0, identifier(client_order_id, "client_order_id", CLIENT_ORDER_ID_LENGTH_MAX)
    raise field_invalid("order_id", "order_id or client_order_id is required")


def page_size(value: int, *, default: int = 100, maximum: int = 500) -> int:
    if value < 0:
        raise field_invalid("page_size", "page_size must not be negative")
    return default if value == 0 else min(value, maximum)


def page_cursor(token: str) -> int:
    """A page token issued by a list call (common/page_tokens.py): the id to continue below;
    '' is the start."""
    try:
        position = page_tokens.decode_number(token)
    except page_tokens.PageTokenError:
        position = -1
    if position == 0 and not token:
        return 0
    if not 0 < position < 10**ORDER_ID_DIGITS_MAX:
        raise RequestError(
            errors_pb2.ERROR_REASON_PAGE_TOKEN_INVALID, "page_token is invalid", field="page_token"
        )
    return position
