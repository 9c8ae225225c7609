"""One real local exchange per test module (`python -m infra.local.stack up` in a temporary
var/, free ports, demo bots off unless the module asks for them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.local_stack import StackCommand, running_local_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[StackCommand]:
    with running_local_stack() as command:
        yield command
