"""One real local exchange per test module (`python -m infra.local.stack up` in a temporary
var/, free ports, demo bots off unless the module asks for them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.stack import DEMO_SYMBOLS, markets_listed
from tests.support.local_stack import StackCommand, local_stack, wait_until


@pytest.fixture(scope="module")
def stack() -> Iterator[StackCommand]:
    with local_stack() as command:
        command.up()
        # The gateway projects the markets from the event log after it starts.
        wait_until(
            "the edge lists the markets", lambda: markets_listed(command.edge_url, DEMO_SYMBOLS)
        )
        yield command
