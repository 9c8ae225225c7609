"""Page sizes and page tokens of the List RPCs (AIP-158; the one scheme of
common/page_tokens.py). The position is the last entry id of the page for ListEntries (a
keyset: entries posted meanwhile do not shift the pages still to read), and the offset in
the list's fixed order for balances and corrections (few rows, rarely inserted)."""

from __future__ import annotations

from common import page_tokens
from ledger.errors import LedgerError, Reason


def page_size_or_default(page_size: int, default: int, maximum: int) -> int:
    if page_size < 0:
        raise LedgerError(Reason.FIELD_INVALID, "page_size must not be negative", field="page_size")
    return default if page_size == 0 else min(page_size, maximum)


def encode_page_token(offset: int) -> str:
    return page_tokens.encode_number(offset)


def decode_page_token(token: str) -> int:
    try:
        return page_tokens.decode_number(token)
    except page_tokens.PageTokenError as error:
        raise LedgerError(Reason.PAGE_TOKEN_INVALID, "page_token is not one we issued") from error
