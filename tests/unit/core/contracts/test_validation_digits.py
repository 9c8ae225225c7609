"""Numbers in request strings are ASCII digits only. `str.isdigit()` is also true of
Unicode digits: "¹" then failed `int()` (a 500 through Envoy, found by bench/fuzz.py:
GET /v1/orders?page_token=%C2%B9) and "٣" (Arabic-Indic three) was read as 3."""

from __future__ import annotations

import pytest
from exchange.common.v1 import errors_pb2

from common import page_tokens
from core.contracts import validation
from core.contracts.errors import RequestError

# superscripts, Arabic-Indic, fullwidth
NOT_ASCII_DIGITS = ["\u00b9", "\u00b25", "\u0663", "1\u0663", "\uff11\uff12"]


@pytest.mark.parametrize(
    "token", NOT_ASCII_DIGITS + [page_tokens.encode(digits) for digits in NOT_ASCII_DIGITS]
)
def test_a_page_token_of_other_digits_is_invalid_by_name(token: str) -> None:
    with pytest.raises(RequestError) as refused:
        validation.page_cursor(token)
    assert refused.value.reason == errors_pb2.ERROR_REASON_PAGE_TOKEN_INVALID


@pytest.mark.parametrize("text", NOT_ASCII_DIGITS)
def test_an_order_id_of_other_digits_is_field_invalid(text: str) -> None:
    with pytest.raises(RequestError) as refused:
        validation.order_id(text)
    assert refused.value.reason == errors_pb2.ERROR_REASON_FIELD_INVALID


def test_ascii_digits_still_read_as_numbers() -> None:
    assert validation.page_cursor(page_tokens.encode_number(1234)) == 1234
    assert validation.order_id("98765") == 98765
