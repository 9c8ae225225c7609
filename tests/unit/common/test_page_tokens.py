"""The one page-token scheme: what is issued reads back, anything else is refused."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import page_tokens


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_a_number_reads_back(position: int) -> None:
    token = page_tokens.encode_number(position)
    assert token.isascii()
    assert "=" not in token  # URL-safe, unpadded: fits a query string as it is
    assert page_tokens.decode_number(token) == position


@given(st.text(max_size=64))
def test_a_text_position_reads_back(position: str) -> None:
    assert page_tokens.decode(page_tokens.encode(position)) == position


def test_the_empty_token_is_the_first_page() -> None:
    assert page_tokens.decode("") == ""
    assert page_tokens.decode_number("") == 0


@pytest.mark.parametrize(
    "token",
    [
        "42",  # a raw id, as the core issued before the one scheme
        "junk",
        "¹",  # the fuzz's Unicode digit
        "before-seq:7",  # the gateway's old trade token
        page_tokens.encode("7") + "=",  # padded: not the spelling issued
        page_tokens.encode("x")[:-1] + "!",
    ],
)
def test_what_was_not_issued_is_refused(token: str) -> None:
    with pytest.raises(page_tokens.PageTokenError):
        page_tokens.decode_number(token)


@pytest.mark.parametrize("position", ["007", "-1", "1.5", "", "12a", "1" * 21])
def test_a_number_token_holds_a_plain_number(position: str) -> None:
    token = page_tokens.encode(position)
    if position == "":
        assert page_tokens.decode_number(token) == 0
        return
    with pytest.raises(page_tokens.PageTokenError):
        page_tokens.decode_number(token)


def test_another_version_is_refused() -> None:
    token = base64.urlsafe_b64encode(b"v2.5").decode().rstrip("=")
    with pytest.raises(page_tokens.PageTokenError):
        page_tokens.decode(token)


def test_a_negative_position_is_a_bug() -> None:
    with pytest.raises(ValueError, match="never negative"):
        page_tokens.encode_number(-1)
