"""One scheme for the page tokens of every List RPC (AIP-158): opaque to the client.

A token is the URL-safe base64 (unpadded) of `v1.` and a position: the decimal id or seq
the next page continues below (the core's orders, fills and transfers; a market's trades in
the gateway and in the history service), the offset in a fixed order (the ledger's lists),
or the last key id seen (API keys). Every service writes and reads tokens here, so a token
one service issued another reads the same way: the gateway hands a ListTrades request for
trades older than its ring, token and all, to the history service. A client must not build
tokens; anything not issued here is `PageTokenError`, which each service answers with
`PAGE_TOKEN_INVALID`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

_VERSION: Final = "v1."
_DIGITS_MAX: Final = 20  # an unsigned 64-bit number


class PageTokenError(ValueError):
    """A page token that no list call issued."""


def encode(position: str) -> str:
    """The token of `position` (text)."""
    raw = (_VERSION + position).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> str:
    """The position `token` holds; '' for the empty token (the first page)."""
    if not token:
        return ""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise PageTokenError(token) from error
    if not text.startswith(_VERSION) or encode(text.removeprefix(_VERSION)) != token:
        raise PageTokenError(token)  # another version, or not the canonical spelling
    return text.removeprefix(_VERSION)


def encode_number(position: int) -> str:
    """The token of a non-negative number (an id, a seq, an offset)."""
    if position < 0:
        message = f"a page position is never negative: {position}"
        raise ValueError(message)
    return encode(str(position))


def decode_number(token: str) -> int:
    """The number `token` holds (ASCII digits, no leading zero); 0 for the empty token."""
    text = decode(token)
    if not text:
        return 0
    if (
        not (text.isascii() and text.isdigit())
        or len(text) > _DIGITS_MAX
        or (text[0] == "0" and text != "0")
    ):
        raise PageTokenError(token)
    return int(text)
