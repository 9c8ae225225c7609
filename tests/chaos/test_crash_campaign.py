"""The short crash campaign (the long one is bench/chaos.py): under SDK load, random
components of a real local exchange are killed and restarted, or paused and resumed; after
every cycle nothing acknowledged is lost, the ledger reconciles exactly with the core and
every WebSocket book equals the core's (tests/support/chaos.py says how each is checked).

CHAOS_SEED=<n> repeats a campaign; CHAOS_CYCLES=<n> changes its length (default 10: the
first eight visit every component once)."""

from __future__ import annotations

import os
import random

import pytest

from tests.support.chaos import COMPONENTS, ChaosOptions, format_table, run_campaign
from tests.support.local_stack import StackCommand

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CHAOS_SEED", random.randrange(2**32)))
CYCLES = int(os.environ.get("CHAOS_CYCLES", "10"))


async def test_every_cycle_loses_nothing_and_reconciles_exactly(stack: StackCommand) -> None:
    print(f"chaos seed {SEED} (CHAOS_SEED={SEED} repeats this campaign), {CYCLES} cycles")
    options = ChaosOptions(cycles=CYCLES, seed=SEED)
    results = await run_campaign(stack, options, stop_at_first_failure=True)
    print(format_table(results))
    failed = [result.line() for result in results if not result.passed]
    assert not failed, f"seed {SEED}:\n" + "\n".join(failed)
    assert len(results) == CYCLES
    # With at least as many cycles as components, every component was hit.
    visited = {result.component for result in results}
    assert len(visited) == min(CYCLES, len(COMPONENTS)), visited
