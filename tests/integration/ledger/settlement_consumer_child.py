"""Child process of the consumer crash tests: runs a settlement consumer until SIGKILLed.

Usage: settlement_consumer_child.py BOOTSTRAP DATABASE_URL MODE
- MODE "hang-before-commit": after the first batch's writes, before its commit, print
  "inserted <events>" and hang (the parent kills it there);
- MODE "run": consume forever, printing "committed <next offset>" after each commit.
"""

from __future__ import annotations

import asyncio
import sys

from ledger.consumer import ConsumerOptions, SettlementConsumer
from ledger.db.connection import create_engine
from ledger.settlement import Settlement


async def main(bootstrap_servers: str, database_url: str, mode: str) -> None:
    engine = create_engine(database_url)

    async def hang() -> None:
        print("inserted", flush=True)
        await asyncio.sleep(3600)

    async def committed(_partition: int, next_offset: int) -> None:
        print(f"committed {next_offset}", flush=True)

    settlement = Settlement(engine, before_commit=hang if mode == "hang-before-commit" else None)
    options = ConsumerOptions(bootstrap_servers, partitions=[0], batch_records_max=40)
    async with SettlementConsumer(settlement, engine, options, on_batch=committed) as consumer:
        print("ready", flush=True)
        await consumer.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
