"""Testing helpers: the service as a child process, identity metadata, a funded BTC-USDT market.

Used by tests/integration/core/service and bench/core_grpc_bench.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Final

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from grpc import aio

from core.contracts.markets import market_message
from core.engine import MarketMode
from core.engine.results import MarketView
from core.engine.testing import btc_usdt_spec
from core.service.identity import ACCOUNT_HEADER, OPERATOR_HEADER

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_LISTENING: Final = re.compile(rb"core service listening on (\S+):(\d+)")
OPERATOR_ID: Final = "operator-1"

Metadata = tuple[tuple[str, str], ...]


def trader(account_id: str) -> Metadata:
    """Call metadata of a trader, as the edge sets it."""
    return ((ACCOUNT_HEADER, account_id),)


def operator(operator_id: str = OPERATOR_ID) -> Metadata:
    return ((OPERATOR_HEADER, operator_id),)


class ServerProcess:
    """`python -m core.service` on a free loopback port; `stop()` sends SIGTERM and waits."""

    def __init__(
        self, data_dir: Path, *extra_arguments: str, start_timeout_seconds: float = 30
    ) -> None:
        self.data_dir = data_dir
        self.address = ""
        self.output: list[bytes] = []
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.service",
                "--data-dir",
                str(data_dir),
                "--listen",
                "127.0.0.1:0",
                *extra_arguments,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        listening = threading.Event()
        stdout = self._process.stdout
        if stdout is None:
            raise RuntimeError("no stdout pipe")

        def read() -> None:
            for line in stdout:
                self.output.append(line)
                match = _LISTENING.search(line)
                if match:
                    self.address = f"{match.group(1).decode()}:{match.group(2).decode()}"
                    listening.set()
            listening.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not listening.wait(start_timeout_seconds) or not self.address:
            self._process.kill()
            raise RuntimeError("the service did not start:\n" + b"".join(self.output).decode())

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self, timeout_seconds: float = 30) -> int:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        code = self._process.wait(timeout_seconds)
        self._reader.join(timeout_seconds)
        return code

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def btc_usdt_market() -> types_pb2.Market:
    spec = btc_usdt_spec()
    view = MarketView(
        spec=spec, mode=MarketMode.NORMAL, reference_price=spec.reference_price, seq=0
    )
    return market_message(view)


async def create_btc_usdt(channel: aio.Channel) -> None:
    """List BTC (scale 8), USDT (scale 6) and BTC-USDT through the admin API."""
    admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
    for code, scale in (("BTC", 8), ("USDT", 6)):
        await admin.CreateAsset(
            core_admin_pb2.CreateAssetRequest(
                asset=types_pb2.Asset(asset=code, scale=scale), request_id=f"asset-{code}"
            ),
            metadata=operator(),
        )
    await admin.CreateMarket(
        core_admin_pb2.CreateMarketRequest(market=btc_usdt_market(), request_id="market-BTC-USDT"),
        metadata=operator(),
    )


async def deposit(channel: aio.Channel, account_id: str, asset: str, amount: int) -> None:
    funding = funding_pb2_grpc.FundingServiceStub(channel)
    await funding.CreateDeposit(
        funding_pb2.CreateDepositRequest(
            transfer_id=f"fund-{account_id}-{asset}",
            account_id=account_id,
            asset=asset,
            amount=amount,
        ),
        metadata=operator(),
    )
