"""`python -m streaming` replaces a failed Quix application (a fatal producer error ends one;
the history server must not go with it) and stops on a signal, also during the back-off."""

from __future__ import annotations

import threading

import pytest

from streaming.__main__ import run_until_stopped


class _Applications:
    """Runs that fail `failures` times, then return (as Quix's run does after SIGTERM)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            message = f"fatal producer error {self.runs}"
            raise RuntimeError(message)


def test_failed_applications_are_replaced_until_one_stops_normally() -> None:
    applications = _Applications(failures=3)

    failures = run_until_stopped(
        applications, threading.Event(), backoff_first_seconds=0.001, backoff_max_seconds=0.002
    )

    assert (failures, applications.runs) == (3, 4)


def test_a_stop_during_the_back_off_ends_without_another_application(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = threading.Event()

    def fail_then_stop() -> None:
        stopping.set()  # the signal arrives while this application fails
        message = "fatal producer error"
        raise RuntimeError(message)

    failures = run_until_stopped(fail_then_stop, stopping, backoff_first_seconds=30.0)

    assert failures == 1
    assert "the application failed (1 so far)" in caplog.text


def test_a_normal_return_is_a_stop() -> None:
    applications = _Applications(failures=0)

    assert run_until_stopped(applications, threading.Event()) == 0
    assert applications.runs == 1
