"""The soak's 3-minute form (the long one is bench/soak.py --minutes 60 --rate 200): the
local exchange under SDK load at a modest rate, a line of figures every 30 s, then drained;
every aim must be met - the rate, 0 broker errors, a ledger lag that does not keep growing,
flat memory and open files after the first minute, and an exact reconciliation. Until the
core's memory growth under this traffic is found (issue 14), a run that misses only the
memory aim is reported as xfail; any other aim missed fails it."""

from __future__ import annotations

import os
import random

import pytest

from tests.support.local_stack import running_local_stack
from tests.support.soak import SoakOptions, format_aims, run_soak

pytestmark = pytest.mark.slow

MEMORY_AIM = "memory flat after warm-up"
SEED = int(os.environ.get("SOAK_SEED", random.randrange(2**32)))


async def test_three_minutes_of_load_meet_the_soak_aims() -> None:
    options = SoakOptions(
        minutes=3, orders_per_second=30, warmup_minutes=1, sample_seconds=30, seed=SEED
    )
    print(f"soak seed {SEED} (SOAK_SEED={SEED} repeats it)")
    with running_local_stack() as stack:
        report = await run_soak(stack, options)
    print(format_aims(report))
    assert len(report.samples) == 6
    missed = {name for name, (met, _detail) in report.aims.items() if not met}
    assert not missed - {MEMORY_AIM}, format_aims(report)
    if missed:
        # Every other aim holds; this one is open in issue 14: the core's RSS grows under the
        # soak's traffic (40 -> 82 MiB in 2 min at 30 orders/s; 1.5 GiB after 10 min at
        # 100/s), beyond what docs/adr/0019 bounded.
        pytest.xfail(f"open in issue 14: {format_aims(report)}")
