"""Testing helpers for the sequencer: a deterministic fake clock and market set-up commands.

`StepClock()` with its defaults gives the command at seq n the timestamp
`CLOCK_NS_START + n * CLOCK_NS_STEP` (one clock read per command), the same as
`core.engine.testing.EngineDriver`, so a never-restarted reference engine is easy to build.
"""

from __future__ import annotations

from typing import Final

from core.engine import Command, CreateAsset, CreateMarket
from core.engine.testing import (
    BTC_SCALE,
    TIMESTAMP_NS_START,
    TIMESTAMP_NS_STEP,
    USDT_SCALE,
    btc_usdt_spec,
)

CLOCK_NS_START: Final = TIMESTAMP_NS_START
CLOCK_NS_STEP: Final = TIMESTAMP_NS_STEP


class StepClock:
    """A fake clock: each call returns the previous value plus `step_ns` (never reads time)."""

    def __init__(self, start_ns: int = CLOCK_NS_START, step_ns: int = CLOCK_NS_STEP) -> None:
        self.now_ns = start_ns
        self.step_ns = step_ns

    def __call__(self) -> int:
        self.now_ns += self.step_ns
        return self.now_ns


def btc_usdt_setup_commands() -> list[Command]:
    """The reference data of the BTC-USDT test market (two assets and the market)."""
    return [
        CreateAsset(asset="BTC", scale=BTC_SCALE),
        CreateAsset(asset="USDT", scale=USDT_SCALE),
        CreateMarket(spec=btc_usdt_spec()),
    ]
