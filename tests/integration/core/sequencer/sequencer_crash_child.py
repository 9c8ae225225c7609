"""Child process for test_sequencer_crash.py: submits through a Sequencer until SIGKILLed.

Usage: python sequencer_crash_child.py SHARD_DIRECTORY RUN_INDEX
Prints "ready <engine_seq>" once recovered, then, only after `submit` returned (so every
printed seq must survive the kill), one line per command:
    "<seq> D <account_id> <amount>"   a USDT deposit to a fresh account
    "<seq> O <account_id>"            a resting buy order of that account (order id = seq)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from core.engine import Deposit, Side
from core.engine.testing import BTC, USDT, limit_order
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import btc_usdt_setup_commands
from core.wal import WalOptions

WORKER_COUNT = 16
DEPOSIT_AMOUNT = 10 * USDT
ORDER_PRICE = 45_000 * USDT  # inside the 10% band, below every ask: rests, never trades
ORDER_QUANTITY = BTC // 10_000

# Snapshots and small segments so kills also land during snapshots and segment rolls; the
# WAL keeps every segment so the parent can replay it from seq 1.
OPTIONS = SequencerOptions(
    snapshot_every_commands=2_000,
    remove_wal_segments_after_snapshot=False,
    wal_options=WalOptions(segment_bytes_max=64 * 1024, record_bytes_max=1024),
)


async def worker(sequencer: Sequencer, run_index: int, worker_index: int) -> None:
    command_index = 0
    while True:
        account_id = f"r{run_index}-w{worker_index:02d}-n{command_index:06d}"
        results = await sequencer.submit(
            [
                Deposit(
                    account_id=account_id, asset="USDT", amount=DEPOSIT_AMOUNT, transfer_id="f"
                ),
                limit_order(account_id, Side.BUY, ORDER_QUANTITY, ORDER_PRICE, client_order_id="o"),
            ]
        )
        deposit_seq = results[0].outcome.engine_seq
        order_seq = results[1].outcome.engine_seq
        sys.stdout.write(
            f"{deposit_seq} D {account_id} {DEPOSIT_AMOUNT}\n{order_seq} O {account_id}\n"
        )
        sys.stdout.flush()
        command_index += 1


async def main(directory: Path, run_index: int) -> None:
    sequencer = Sequencer.open(directory, clock=time.time_ns, options=OPTIONS)
    if not sequencer.engine.assets():
        await sequencer.submit(btc_usdt_setup_commands())
    sys.stdout.write(f"ready {sequencer.engine_seq}\n")
    sys.stdout.flush()
    await asyncio.gather(*(worker(sequencer, run_index, index) for index in range(WORKER_COUNT)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
