"""The event path's health rules (common/event_path_health.py) with a test clock: unhealthy only
after failing for longer than the bound with no success in between; the reporter flips the
health service once per change and says why."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common.event_path_health import UNHEALTHY_PREFIX, EventPath, HealthReporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_path_is_unhealthy_only_past_the_bound_without_a_success() -> None:
    clock = Clock()
    path = EventPath("consumer", bound_seconds=30, clock=clock)
    assert path.problem() is None  # idle: never failed
    path.succeeded()
    clock.now += 5
    path.failed(ConnectionError("refused"))
    clock.now += 30
    path.failed("timeout")
    assert path.problem() is None  # failing for exactly the bound
    clock.now += 1
    problem = path.problem()
    assert problem is not None
    assert problem.startswith("consumer failing for 31s (bound 30s, 2 consecutive failures")
    assert "last success 36s ago; last error: timeout" in problem
    path.succeeded()
    assert (path.problem(), path.consecutive_failures) == (None, 0)


def test_the_reporter_flips_the_health_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    path = EventPath("publisher", bound_seconds=1, clock=clock)
    changes: list[bool] = []

    async def set_serving(*, serving: bool) -> None:
        changes.append(serving)

    async def scenario() -> None:
        reporter = HealthReporter([path], set_serving)
        assert await reporter.check() is None
        path.failed("broker down")
        clock.now += 2
        assert "publisher failing for 2s" in (await reporter.check() or "")
        await reporter.check()  # still unhealthy: no second change
        path.succeeded()
        assert await reporter.check() is None

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert changes == [False, True]
    assert any(record.getMessage().startswith(UNHEALTHY_PREFIX) for record in caplog.records)
