"""Testing helpers: the service as a child process, identity metadata, a funded BTC-USDT market.

Used by tests/integration/core/service, bench/core_grpc_bench.py, bench/core_memory.py and
bench/historical_state.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Final

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from grpc import aio

from common.identity_headers import ACCOUNT_HEADER, OPERATOR_HEADER
from core.contracts.markets import market_message
from core.engine import MarketMode
from core.engine.results import MarketView
from core.engine.testing import BTC, USDT, btc_usdt_spec
from core.service.server import CoreService, ServiceConfig

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_LISTENING: Final = re.compile(rb"core service listening on (\S+):(\d+)")
OPERATOR_ID: Final = "operator-1"

Metadata = tuple[tuple[str, str], ...]


@asynccontextmanager
async def in_process_core(
    *, history_window_per_account: int | None = None
) -> AsyncIterator[tuple[CoreService, aio.Channel]]:
    """A started CoreService in this process on a loopback port, over a temporary data
    directory, and a channel to it (both closed and removed on exit)."""
    with tempfile.TemporaryDirectory() as directory:
        core = CoreService(
            ServiceConfig(
                data_dir=Path(directory) / "core",
                listen="127.0.0.1:0",
                snapshot_on_shutdown=False,
                history_window_per_account=history_window_per_account,
            )
        )
        port = await core.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield core, channel
        finally:
            await core.stop()


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


def rss_mib(pid: int) -> float:
    """Resident set size of process `pid` (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def fund_load_accounts(channel: aio.Channel, accounts: tuple[str, ...]) -> None:
    """List BTC-USDT and fund `accounts` for hours of `trade_and_cancel`."""
    await create_btc_usdt(channel)
    for account_id in accounts:
        await deposit(channel, account_id, "BTC", 10**6 * BTC)
        await deposit(channel, account_id, "USDT", 10**12 * USDT)


async def trade_and_cancel(
    channel: aio.Channel,
    accounts: tuple[str, ...],
    first: int,
    count: int,
    *,
    concurrency: int = 20,
) -> None:
    """`count` rounds as the soak's makers and takers trade: in each, a maker's limit sell,
    a taker's IOC buy that fills it, and a resting buy that the maker then cancels (3 orders,
    1 cancel, 2 fills). Rounds `first`..`first + count - 1` (their ids are unique)."""
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    price = 50_000 * USDT
    lot = BTC // 10_000
    gtc, ioc = types_pb2.TIME_IN_FORCE_GTC, types_pb2.TIME_IN_FORCE_IOC
    buy, sell = types_pb2.SIDE_BUY, types_pb2.SIDE_SELL

    async def place(
        account_id: str, client_order_id: str, side: int, at: int, time_in_force: int
    ) -> trading_pb2.PlaceOrderResponse:
        request = trading_pb2.PlaceOrderRequest(
            client_order_id=client_order_id,
            symbol="BTC-USDT",
            side=side,  # type: ignore[arg-type]
            order_type=types_pb2.ORDER_TYPE_LIMIT,
            quantity=lot,
            price=at,
            time_in_force=time_in_force,  # type: ignore[arg-type]
        )
        response: trading_pb2.PlaceOrderResponse = await trading.PlaceOrder(
            request, metadata=trader(account_id)
        )
        return response

    async def round_(number: int) -> None:
        maker = accounts[number % len(accounts)]
        taker = accounts[(number + 1) % len(accounts)]
        await place(maker, f"m-{number}", sell, price, gtc)
        await place(taker, f"t-{number}", buy, price, ioc)
        resting = await place(maker, f"r-{number}", buy, price - 100 * USDT, gtc)
        await trading.CancelOrder(
            trading_pb2.CancelOrderRequest(
                order_id=resting.order.order_id, request_id=f"x-{number}"
            ),
            metadata=trader(maker),
        )

    numbers = iter(range(first, first + count))

    async def worker() -> None:
        for number in numbers:
            await round_(number)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
