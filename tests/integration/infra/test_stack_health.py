"""A broken event path is unhealthy, not "running": the real local exchange (no bots) with a
short event-path bound; the broker is paused (SIGSTOP: it still accepts connections, but
answers nothing) -> core, ledger, streaming and gateway report their event path NOT_SERVING
within the bound (plus the probe's timeout), `status` names each one unhealthy with the
reason and exits 1; a deposit meanwhile is acknowledged by the core but cannot reach the
ledger, and reconciliation reads LAGGING (with the lag), never MATCHED; the broker resumed
(SIGCONT) -> every component is healthy again, `status` exits 0, and reconciliation reads
MATCHED once the ledger has caught up."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2

from common.event_path_health import BOUND_VARIABLE, EVENT_PATH_SERVICE
from infra.local.probes import grpc_health_status
from tests.support.exchange_access import deposit, engine_status, reconciliation
from tests.support.local_stack import StackCommand, local_stack, wait_until

BOUND_SECONDS = 5
# The probe's timeout (5 s) and interval (2 s) and the reporter's 1 s come on top of the bound.
DETECTION_SECONDS = BOUND_SECONDS + 5 + 2 + 1 + 10  # + slack for a loaded machine
SERVICES = ("core", "ledger", "streaming", "gateway")
MATCHED = ledger_types_pb2.RECONCILIATION_STATUS_MATCHED
LAGGING = ledger_types_pb2.RECONCILIATION_STATUS_LAGGING


@pytest.fixture
def stack() -> Iterator[StackCommand]:
    with local_stack() as command:
        command.environment[BOUND_VARIABLE] = str(BOUND_SECONDS)
        # The ledger's reconciliation: LAGGING once it lags and has not advanced for 5 s.
        command.environment["LEDGER_RECONCILIATION_STALLED_SECONDS_MAX"] = str(BOUND_SECONDS)
        command.up()
        yield command


def _lines(stack: StackCommand) -> dict[str, str]:
    status = stack("status")
    return {
        line.split(":", 1)[0]: line.split(":", 1)[1]
        for line in status.stdout.splitlines()
        if ":" in line
    } | {"(exit)": str(status.returncode)}


def _event_paths(stack: StackCommand) -> dict[str, str | None]:
    ports = stack.ports
    addresses = {
        "core": ports.core,
        "ledger": ports.ledger,
        "streaming": ports.streaming,
        "gateway": ports.gateway_grpc,
    }
    return {
        name: grpc_health_status(f"127.0.0.1:{port}", EVENT_PATH_SERVICE)
        for name, port in addresses.items()
    }


def test_a_paused_broker_makes_the_services_unhealthy_until_it_resumes(
    stack: StackCommand,
) -> None:
    healthy = _lines(stack)
    assert healthy["(exit)"] == "0", healthy
    assert all("healthy" in healthy[name] for name in SERVICES), healthy
    assert _event_paths(stack) == dict.fromkeys(SERVICES, "SERVING")
    wait_until(  # the ledger settles `up`'s set-up
        "reconciliation MATCHED", lambda: reconciliation(stack, 0).status == MATCHED
    )
    assert reconciliation(stack, 0).lag_engine_seqs == 0

    broker_pid = stack.pid("broker")
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        wait_until(
            "every service's event path NOT_SERVING",
            lambda: _event_paths(stack) == dict.fromkeys(SERVICES, "NOT_SERVING"),
            timeout_seconds=DETECTION_SECONDS,
        )
        broken = _lines(stack)
        assert broken["(exit)"] == "1", broken
        for name in SERVICES:
            assert "unhealthy: event path NOT_SERVING (" in broken[name], broken[name]
            assert "failing for" in broken[name], broken[name]
        assert "unhealthy" in broken["broker"], broken["broker"]
        assert "unhealthy" not in broken["postgres"], broken["postgres"]
        core_log = (stack.var / "log" / "core.log").read_text()
        assert "event path unhealthy: " in core_log

        deposit(stack, "health-depositor", "health-deposit-1", 10**6)  # in the WAL, not the log
        core_seq = engine_status(stack).engine_seq
        wait_until(
            "reconciliation LAGGING",
            lambda: reconciliation(stack, 0).status == LAGGING,
            timeout_seconds=BOUND_SECONDS + 10,
        )
        lagging = reconciliation(stack, 0)
        assert lagging.lag_engine_seqs >= 1, lagging
        assert lagging.ledger_engine_seq < core_seq
        assert lagging.stalled_for.ToMilliseconds() > BOUND_SECONDS * 1000
    finally:
        os.kill(broker_pid, signal.SIGCONT)

    wait_until(
        "every service's event path SERVING again",
        lambda: _event_paths(stack) == dict.fromkeys(SERVICES, "SERVING"),
        timeout_seconds=60,
    )
    recovered = _lines(stack)
    assert recovered["(exit)"] == "0", recovered
    assert "event path healthy again" in (stack.var / "log" / "ledger.log").read_text()
    wait_until(
        "reconciliation MATCHED after the ledger caught up",
        lambda: reconciliation(stack, 0).status == MATCHED,
        timeout_seconds=60,
    )
    caught_up = reconciliation(stack, 0)
    assert (caught_up.lag_engine_seqs, caught_up.ledger_engine_seq) == (0, core_seq)
