"""The soak's judgement of its own figures (tests/support/soak.py: judge)."""

from __future__ import annotations

import dataclasses

from tests.support.process_usage import ProcessUsage
from tests.support.soak import (
    CORES,
    LOAD,
    MIB,
    Sample,
    SoakOptions,
    SoakReport,
    cpu_cores_busy,
    judge,
)


def _sample(minute: int, *, lag: int, memory_mib: int = 100, files: int = 40) -> Sample:
    return Sample(
        elapsed_seconds=minute * 60.0,
        placed=200 * 60,
        placed_per_second=200.0,
        commands=0,
        rejections=0,
        unavailable=0,
        place_latency_p99_ms=10.0,
        ledger_lag=lag,
        ledger_lag_max=lag,
        broker_errors=0,
        websocket_lag_ms=(1.0, 2.0, 3.0),
        trades_received=10,
        usage={"core": ProcessUsage(1, memory_mib * MIB, files)},
    )


def _judged(samples: list[Sample], status: str = "MATCHED") -> dict[str, bool]:
    report = SoakReport(SoakOptions(minutes=len(samples), orders_per_second=200.0))
    report.samples = samples
    report.reconciliation_status = status
    judge(report, rate_aim=200.0)
    return {name: met for name, (met, _detail) in report.aims.items()}


def test_a_steady_run_meets_every_aim() -> None:
    lags = [40, 300, 120, 310, 90, 250]  # jitter, no trend
    assert all(_judged([_sample(m + 1, lag=lag) for m, lag in enumerate(lags)]).values())


def test_a_lag_that_grows_for_more_than_a_minute_is_not_bounded() -> None:
    lags = [40, 600, 1_400, 2_500, 90]
    judged = _judged([_sample(m + 1, lag=lag) for m, lag in enumerate(lags)])
    assert judged["ledger lag bounded"] is False


def test_growing_memory_or_files_after_warm_up_and_a_lagging_ledger_fail() -> None:
    memory = [_sample(m + 1, lag=0, memory_mib=100 + 30 * m) for m in range(4)]
    assert _judged(memory)["memory flat after warm-up"] is False
    files = [_sample(m + 1, lag=0, files=40 + 20 * m) for m in range(4)]
    assert _judged(files)["open files flat after warm-up"] is False
    steady = [_sample(m + 1, lag=0) for m in range(4)]
    assert _judged(steady, status="LAGGING")["reconciliation exact"] is False


def test_a_rate_short_of_the_aim_by_more_than_the_pacing_allowance_is_not_met() -> None:
    def placed(per_minute: int) -> list[Sample]:
        return [dataclasses.replace(_sample(m + 1, lag=0), placed=per_minute) for m in range(3)]

    assert _judged(placed(int(200 * 60 * 0.99)))["order rate"] is True
    assert _judged(placed(int(200 * 60 * 0.95)))["order rate"] is False


def test_the_cpu_bound_is_the_cores_over_the_cpu_per_placement() -> None:
    sample = dataclasses.replace(
        _sample(1, lag=0),
        placed=6_000,  # 100/s over the minute
        interval_seconds=60.0,
        cpu_cores_busy={"core": 0.5, "ledger": 0.25, LOAD: 0.25},  # 1 core in all
    )
    assert sample.cpu_per_placement_ms == 10.0  # 60 CPU-seconds / 6,000 placements
    assert sample.cpu_bound_per_second == 100.0 * CORES
    assert cpu_cores_busy({"core": 10.0, LOAD: 1.0}, {"core": 40.0, LOAD: 1.5}, 60.0) == {
        "core": 0.5,
        LOAD: 0.5 / 60,
    }
    report = SoakReport(SoakOptions(minutes=1, orders_per_second=200.0))
    report.samples = [sample]
    judge(report, rate_aim=200.0)
    met, detail = report.aims["order rate"]
    assert met is False
    assert f"{CORES} cores would bear {100 * CORES}/s" in detail
