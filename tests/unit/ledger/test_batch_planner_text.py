"""The planner's small encoders, without a database."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.batch_planner import array_literal, psycopg_conninfo


def test_a_sqlalchemy_url_becomes_a_libpq_uri() -> None:
    conninfo = psycopg_conninfo("postgresql+psycopg://ledger_app:s%40cret@127.0.0.1:5433/ledger")
    assert psycopg.conninfo.conninfo_to_dict(conninfo) == {
        "user": "ledger_app",
        "password": "s@cret",
        "host": "127.0.0.1",
        "port": "5433",
        "dbname": "ledger",
    }


@pytest.mark.parametrize(
    ("texts", "literal"),
    [
        (["shard-1:7"], '{"shard-1:7"}'),
        (['a"b', "c\\d", "x,y", "{}"], '{"a\\"b","c\\\\d","x,y","{}"}'),
    ],
)
def test_text_array_literals_quote_and_escape(texts: list[str], literal: str) -> None:
    assert array_literal(texts) == literal


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00")), min_size=1))
def test_a_text_array_literal_parses_back_to_its_elements(texts: list[str]) -> None:
    """Parsed by PostgreSQL's rules for a quoted element: backslash escapes the next char."""
    body = array_literal(texts)[1:-1]
    parsed, element, inside, escaped = [], "", False, False
    for char in body:
        if escaped:
            element, escaped = element + char, False
        elif char == "\\":
            escaped = True
        elif char == '"':
            inside = not inside
        elif char == "," and not inside:
            parsed.append(element)
            element = ""
        else:
            element += char
    parsed.append(element)
    assert parsed == texts
