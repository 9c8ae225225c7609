"""The local exchange as a newcomer runs it: `up` starts detached processes that answer,
lists the markets, is safe to repeat; `down` stops everything; data survives a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc

from infra.local.ports import free_port
from infra.local.reference_data import STACK_OPERATOR_ID
from tests.paths import REPO_ROOT


class _StackCommand:
    def __init__(self, var: Path) -> None:
        self.var = var
        self.core_port = free_port()
        self.environment = {
            **os.environ,
            "EXCHANGE_CORE_PORT": str(self.core_port),
            "EXCHANGE_BROKER_PORT": str(free_port()),
        }

    def __call__(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infra.local.stack", action, "--var", str(self.var)],
            cwd=REPO_ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[_StackCommand]:
    command = _StackCommand(tmp_path / "var")
    try:
        yield command
    finally:
        command("down")


def _engine_status(port: int) -> core_admin_pb2.GetEngineStatusResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        response: core_admin_pb2.GetEngineStatusResponse = admin.GetEngineStatus(
            core_admin_pb2.GetEngineStatusRequest(),
            metadata=(("x-exchange-operator-id", STACK_OPERATOR_ID),),
            timeout=10,
        )
        return response


def test_up_status_down_and_data_survives(stack: _StackCommand) -> None:
    started = stack("up")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "markets: BTC-USDT, ETH-USDT" in started.stdout
    assert stack("status").returncode == 0

    status = _engine_status(stack.core_port)
    assert sorted(market.symbol for market in status.markets) == ["BTC-USDT", "ETH-USDT"]
    seq_after_first_up = status.engine_seq
    deadline = time.monotonic() + 15
    while status.published_engine_seq < seq_after_first_up:  # the outbox reaches the broker
        assert time.monotonic() < deadline, f"the outbox did not publish: {status}"
        time.sleep(0.1)
        status = _engine_status(stack.core_port)

    again = stack("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    # Re-listing identical reference data logs nothing.
    assert _engine_status(stack.core_port).engine_seq == seq_after_first_up

    stopped = stack("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stack("status").returncode == 1
    with grpc.insecure_channel(f"127.0.0.1:{stack.core_port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            trading_pb2_grpc.TradingServiceStub(channel).ListAccountBalances(
                trading_pb2.ListAccountBalancesRequest(), timeout=2
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    restarted = stack("up")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert _engine_status(stack.core_port).engine_seq == seq_after_first_up
