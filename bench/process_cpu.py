"""CPU time of another process on this machine, for benchmarks that split CPU by process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CLOCK_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS_PER_SECOND, int(fields[12]) / CLOCK_TICKS_PER_SECOND
