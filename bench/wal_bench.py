"""Write-ahead log benchmark: one fsync per record vs group commit, on this machine's disk.

Run: .venv/bin/python bench/wal_bench.py [--seconds 3] [--appenders 256] [--directory DIR]

Phases (each on a fresh log in a temporary directory, ~100-byte payloads):
1. one appender awaiting `append_durable([payload])` in a loop: one fsync per record;
2. many concurrent appenders doing the same: group commit shares each fsync;
3. phase 2 with an epoch fence checked on every group commit;
4. the cost of one fence check on its own.
Prints records/s, fsyncs/s, p50/p99 latency of `append_durable`, and the group-commit ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.wal import EpochFence, WalOptions, WriteAheadLog, acquire_epoch

PAYLOAD_BYTES = 100
FENCE_CHECK_COUNT = 20_000


@dataclass(frozen=True, slots=True)
class PhaseResult:
    name: str
    records: int
    fsyncs: int
    elapsed_seconds: float
    latencies_us: list[float]

    @property
    def records_per_second(self) -> float:
        return self.records / self.elapsed_seconds

    @property
    def fsyncs_per_second(self) -> float:
        return self.fsyncs / self.elapsed_seconds

    def percentile_us(self, fraction: float) -> float:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.records_per_second:>10,.0f} records/s "
            f"{self.fsyncs_per_second:>8,.0f} fsyncs/s "
            f"{self.records / max(1, self.fsyncs):>7.1f} records/fsync  "
            f"p50 {self.percentile_us(0.50) / 1000:>7.2f} ms  "
            f"p99 {self.percentile_us(0.99) / 1000:>7.2f} ms"
        )


async def run_phase(
    name: str, directory: Path, *, appender_count: int, seconds: float, fenced: bool
) -> PhaseResult:
    directory.mkdir(parents=True)
    fence: EpochFence | None = None
    epoch = 1
    if fenced:
        epoch = acquire_epoch(directory)
        fence = EpochFence(directory, epoch)
    log = WriteAheadLog.open(
        directory, epoch=epoch, fence=fence, options=WalOptions(record_bytes_max=1024)
    )
    fsyncs_at_start = log.fsync_count
    latencies_us: list[float] = []
    payload = b"p" * PAYLOAD_BYTES
    deadline = time.perf_counter() + seconds

    async def appender() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            await log.append_durable([payload])
            latencies_us.append((time.perf_counter_ns() - started) / 1000)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appender_count)))
    elapsed_seconds = time.perf_counter() - started
    await log.aclose()
    if fence is not None:
        fence.close()
    return PhaseResult(
        name=name,
        records=len(latencies_us),
        fsyncs=log.fsync_count - fsyncs_at_start,
        elapsed_seconds=elapsed_seconds,
        latencies_us=latencies_us,
    )


def fence_check_us(directory: Path) -> float:
    directory.mkdir(parents=True)
    fence = EpochFence(directory, acquire_epoch(directory))
    samples_us: list[float] = []
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(FENCE_CHECK_COUNT // 5):
            fence.check()
        samples_us.append((time.perf_counter_ns() - started) / 1000 / (FENCE_CHECK_COUNT // 5))
    fence.close()
    return statistics.median(samples_us)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each phase")
    parser.add_argument("--appenders", type=int, default=256, help="concurrent appenders")
    parser.add_argument("--directory", type=Path, default=None, help="where to write (temp)")
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=arguments.directory))
    try:
        print(f"directory: {root}; payload {PAYLOAD_BYTES} bytes; {arguments.seconds} s/phase")
        single = await run_phase(
            "1 appender (fsync per record)",
            root / "single",
            appender_count=1,
            seconds=arguments.seconds,
            fenced=False,
        )
        print(single.line())
        grouped = await run_phase(
            f"{arguments.appenders} appenders (group commit)",
            root / "grouped",
            appender_count=arguments.appenders,
            seconds=arguments.seconds,
            fenced=False,
        )
        print(grouped.line())
        fenced = await run_phase(
            f"{arguments.appenders} appenders + fence check",
            root / "fenced",
            appender_count=arguments.appenders,
            seconds=arguments.seconds,
            fenced=True,
        )
        print(fenced.line())
        print(
            f"group commit / fsync per record: "
            f"{grouped.records_per_second / single.records_per_second:.1f}x records/s"
        )
        check_us = fence_check_us(root / "fence")
        print(f"fence check (flock SH + read 16 bytes + unlock): {check_us:.1f} us")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    asyncio.run(main())
