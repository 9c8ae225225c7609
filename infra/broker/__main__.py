"""`python -m infra.broker --data-dir DIR --port PORT`: run the broker until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from infra.broker.server import Broker


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.broker", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--advertised-host", default=None)
    parser.add_argument("--default-partitions", type=int, default=1)
    parser.add_argument(
        "--no-auto-create-topics", action="store_true", help="refuse unknown topics in Metadata"
    )
    parser.add_argument("--retention-check-seconds", type=float, default=5.0)
    parser.add_argument("--log-level", default="INFO")
    arguments = parser.parse_args()
    logging.basicConfig(
        level=arguments.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(_run(arguments))


async def _run(arguments: argparse.Namespace) -> None:
    broker = Broker(
        arguments.data_dir,
        host=arguments.host,
        port=arguments.port,
        advertised_host=arguments.advertised_host,
        auto_create_topics=not arguments.no_auto_create_topics,
        default_partitions=arguments.default_partitions,
        retention_check_seconds=arguments.retention_check_seconds,
    )
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(broker.serve_forever())
    await stop.wait()
    serving.cancel()
    await broker.close()


if __name__ == "__main__":
    main()
