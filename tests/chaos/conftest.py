"""One real local exchange for the crash campaign (demo bots off: the checks count every
open order and balance)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.local_stack import StackCommand, running_local_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[StackCommand]:
    with running_local_stack() as command:
        yield command
