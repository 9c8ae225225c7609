"""The core's memory is bounded by its live state and its per-account windows, not by the
number of commands it has processed (docs/adr/0019).

The real `python -m core.service` process, with a small history window (50 per account, so
every window is full after the warm-up), trades as the soak's makers and takers do (fills and
cancels, 3 orders per round). Its RSS after K = 1,500 rounds and after 3K must be equal within
3 MiB (measured: +0.2 MiB). The change tracking that kept every order since the last snapshot
(fixed, ADR 0019) gave +5.4 MiB here; the default window (10,000 per account) would retain
~1.5 KiB per order, ~13 MiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from grpc import aio

from core.service.testing import ServerProcess, fund_load_accounts, rss_mib, trade_and_cancel

ACCOUNTS: Final = ("mem-a", "mem-b", "mem-c", "mem-d")
WINDOW: Final = 50
WARM_UP_ROUNDS: Final = 500
ROUNDS_K: Final = 1_500
GROWTH_MAX_MIB: Final = 3.0


async def test_rss_does_not_grow_with_the_command_count(tmp_path: Path) -> None:
    with ServerProcess(
        tmp_path / "core", "--history-window-per-account", str(WINDOW), "--log-level", "WARNING"
    ) as server:
        async with aio.insecure_channel(server.address) as channel:
            await fund_load_accounts(channel, ACCOUNTS)
            await trade_and_cancel(channel, ACCOUNTS, 0, WARM_UP_ROUNDS)
            await trade_and_cancel(channel, ACCOUNTS, WARM_UP_ROUNDS, ROUNDS_K)
            after_k = rss_mib(server.pid)
            await trade_and_cancel(channel, ACCOUNTS, WARM_UP_ROUNDS + ROUNDS_K, 2 * ROUNDS_K)
            after_3k = rss_mib(server.pid)
        growth = after_3k - after_k
        assert growth < GROWTH_MAX_MIB, (
            f"RSS {after_k:.1f} MiB after {ROUNDS_K} rounds, {after_3k:.1f} MiB after "
            f"{3 * ROUNDS_K}: +{growth:.1f} MiB"
        )
