"""One real local exchange for the fuzz (`python -m infra.local.stack up`, free ports, demo
bots off), with a rate limit high enough that the fuzz measures the API, not the limiter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.components import DEMO_SYMBOLS, markets_listed
from tests.support.local_stack import StackCommand, local_stack, wait_until


@pytest.fixture(scope="module")
def stack() -> Iterator[StackCommand]:
    with local_stack() as command:
        command.environment["EDGE_RATE_LIMIT_PER_MINUTE"] = "1000000"
        command.up()
        wait_until(
            "the edge lists the markets",
            lambda: markets_listed(command.edge_url, DEMO_SYMBOLS),
            timeout_seconds=60,
        )
        yield command
