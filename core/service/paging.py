"""Pages of List calls: newest first, the page token is the id to continue below
(common/page_tokens.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from common import page_tokens

ItemT = TypeVar("ItemT")


def fill_page(
    items: Iterable[ItemT],
    page_size: int,
    cursor: Callable[[ItemT], int],
    add: Callable[[ItemT], None],
) -> str:
    """Add up to `page_size` items; returns the next page token ('' when nothing is left)."""
    last: ItemT | None = None
    for count, item in enumerate(items):
        if count == page_size and last is not None:
            return page_tokens.encode_number(cursor(last))
        add(item)
        last = item
    return ""
