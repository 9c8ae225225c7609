"""Page sizes and opaque page tokens of the List RPCs (AIP-158)."""

from __future__ import annotations

import base64

from ledger.errors import LedgerError, Reason


def page_size_or_default(page_size: int, default: int, maximum: int) -> int:
    if page_size < 0:
        raise LedgerError(Reason.FIELD_INVALID, "page_size must not be negative", field="page_size")
    return default if page_size == 0 else min(page_size, maximum)


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, number = text.partition(":")
        offset = int(number)
    except ValueError as error:
        raise LedgerError(Reason.PAGE_TOKEN_INVALID, "page_token is not one we issued") from error
    if kind != "o" or offset < 0:
        raise LedgerError(Reason.PAGE_TOKEN_INVALID, "page_token is not one we issued")
    return offset
