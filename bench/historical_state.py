"""The engine at an earlier seq, as the ledger's reconciliation asks it (docs/adr/0020): a
few seqs behind the live one, after some more traffic each time.

One in-process core trades as the soak's makers and takers do; at each order count it asks
the balances at (live seq - 7) twice (what GetEngineBalances reads), both in this run: a cold
rebuild from the files (what every request cost before ADR 0020: the last snapshot, here
none, plus the WAL) and the service's answer, brought forward from its previous one, asked
1,000 seqs earlier (the previous reconciliation, 5 s of 200 commands/s before). Prints both
times and their ratio.

    .venv/bin/python bench/historical_state.py [--orders 10000 20000 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from core.engine import BalanceView, Engine
from core.service.historical_state import rebuild_engine
from core.service.testing import fund_load_accounts, in_process_core, trade_and_cancel

ORDERS_PER_ROUND = 3
BEHIND = 7
PREVIOUS_BEHIND = 1_000


def _balances(engine: Engine, _seq: int, _last_event_seq: int) -> list[BalanceView]:
    return engine.all_balances()  # what GetEngineBalances reads (GetStateHash: O(state) more)


async def run(order_counts: list[int]) -> None:
    accounts = ("hist-0", "hist-1", "hist-2", "hist-3")
    async with in_process_core() as (core, channel):
        sequencer = core.runtime.sequencer
        historical = core.runtime.historical
        await fund_load_accounts(channel, accounts)
        rounds_done = 0
        print(
            f"{'orders':>8} {'engine seq':>11} {'cold ms':>9} {'forward ms':>11} "
            f"{'records':>8} {'ratio':>7}"
        )
        for orders in order_counts:
            rounds = orders // ORDERS_PER_ROUND
            await trade_and_cancel(channel, accounts, rounds_done, rounds - rounds_done)
            rounds_done = rounds
            seq = sequencer.engine_seq - BEHIND
            started = time.perf_counter()
            cold = rebuild_engine(
                sequencer.directory, sequencer.wal, sequencer.options.engine_config, seq
            ).engine.all_balances()
            cold_ms = (time.perf_counter() - started) * 1000
            await historical.read_at(seq - PREVIOUS_BEHIND, _balances)
            applied_before = historical.records_applied
            started = time.perf_counter()
            forward = await historical.read_at(seq, _balances)
            forward_ms = (time.perf_counter() - started) * 1000
            if forward != cold:
                raise SystemExit(f"balances at {seq} differ from a cold rebuild's")
            print(
                f"{orders:>8,} {seq:>11,} {cold_ms:>9.1f} {forward_ms:>11.1f} "
                f"{historical.records_applied - applied_before:>8,} "
                f"{cold_ms / forward_ms:>6.0f}x",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 20_000, 40_000])
    asyncio.run(run(parser.parse_args().orders))


if __name__ == "__main__":
    main()
