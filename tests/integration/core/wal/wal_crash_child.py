"""Child process for test_wal_crash.py: appends with group commit until it is SIGKILLed.

Usage: python wal_crash_child.py WAL_DIRECTORY
Prints "ready" once the log is open, then one line "<seq> <payload>" per record, written only
after `append_durable` acknowledged it (so every printed seq must survive the kill).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from core.wal import WalOptions, WriteAheadLog

APPENDER_COUNT = 32
RECORDS_PER_CALL = 3


async def appender(log: WriteAheadLog, appender_index: int) -> None:
    record_index = 0
    while True:
        payloads = [
            f"appender-{appender_index:02d}-record-{record_index + offset:07d}".encode()
            for offset in range(RECORDS_PER_CALL)
        ]
        seqs = await log.append_durable(payloads)
        lines = "".join(
            f"{seq} {payload.decode()}\n" for seq, payload in zip(seqs, payloads, strict=True)
        )
        sys.stdout.write(lines)
        sys.stdout.flush()
        record_index += RECORDS_PER_CALL


async def main(directory: Path) -> None:
    # small segments so kills also land during segment rolls
    log = WriteAheadLog.open(
        directory, epoch=1, options=WalOptions(segment_bytes_max=64 * 1024, record_bytes_max=1024)
    )
    sys.stdout.write(f"ready {log.last_seq}\n")
    sys.stdout.flush()
    await asyncio.gather(*(appender(log, index) for index in range(APPENDER_COUNT)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
