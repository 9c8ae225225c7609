"""Command line and environment of `python -m core.service` (flags win over the environment).

| flag | environment | default |
|---|---|---|
| `--data-dir` | `EXCHANGE_CORE_DATA_DIR` | required |
| `--listen` | `EXCHANGE_CORE_LISTEN` | `127.0.0.1:50051` (port 0: any free port) |
| `--shard-id` | `EXCHANGE_CORE_SHARD_ID` | `core-0` |
| `--snapshot-every` | `EXCHANGE_CORE_SNAPSHOT_EVERY` | `100000` commands (0: only on demand) |
| `--no-shutdown-snapshot` | `EXCHANGE_CORE_SHUTDOWN_SNAPSHOT=0` | snapshot at shutdown |
| `--grace-seconds` | `EXCHANGE_CORE_GRACE_SECONDS` | `5` |
| `--open-orders-max-per-account` | `EXCHANGE_CORE_OPEN_ORDERS_MAX` | `1000` (fresh shard only) |
| `--history-window-per-account` | `EXCHANGE_CORE_HISTORY_WINDOW` | `10000` per account (ADR 0019) |
| `--log-level` | `EXCHANGE_CORE_LOG_LEVEL` | `INFO` |
| `--broker` | `EXCHANGE_BROKER` | none: no outbox (events neither journaled nor published) |
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from core.service.server import ServiceConfig


def parse_config(argv: Sequence[str], environ: dict[str, str] | None = None) -> ServiceConfig:
    env = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m core.service", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=env.get("EXCHANGE_CORE_DATA_DIR"))
    parser.add_argument("--listen", default=env.get("EXCHANGE_CORE_LISTEN", "127.0.0.1:50051"))
    parser.add_argument("--shard-id", default=env.get("EXCHANGE_CORE_SHARD_ID", "core-0"))
    parser.add_argument(
        "--snapshot-every", type=int, default=int(env.get("EXCHANGE_CORE_SNAPSHOT_EVERY", "100000"))
    )
    parser.add_argument(
        "--no-shutdown-snapshot",
        action="store_true",
        default=env.get("EXCHANGE_CORE_SHUTDOWN_SNAPSHOT", "1") == "0",
    )
    parser.add_argument(
        "--grace-seconds", type=float, default=float(env.get("EXCHANGE_CORE_GRACE_SECONDS", "5"))
    )
    parser.add_argument(
        "--open-orders-max-per-account",
        type=int,
        default=int(env.get("EXCHANGE_CORE_OPEN_ORDERS_MAX", "1000")),
    )
    parser.add_argument(
        "--history-window-per-account",
        type=int,
        default=int(env["EXCHANGE_CORE_HISTORY_WINDOW"])
        if env.get("EXCHANGE_CORE_HISTORY_WINDOW")
        else None,
    )
    parser.add_argument("--log-level", default=env.get("EXCHANGE_CORE_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--broker",
        default=env.get("EXCHANGE_BROKER") or None,
        help="Kafka-API bootstrap servers host:port the outbox publishes the events to",
    )
    args = parser.parse_args(list(argv))
    if args.data_dir is None:
        parser.error("--data-dir (or EXCHANGE_CORE_DATA_DIR) is required")
    if args.history_window_per_account is not None and args.history_window_per_account < 1:
        parser.error("--history-window-per-account must be positive")
    if args.snapshot_every < 0:
        parser.error("--snapshot-every must not be negative")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return ServiceConfig(
        data_dir=args.data_dir,
        listen=args.listen,
        shard_id=args.shard_id,
        snapshot_every_commands=args.snapshot_every,
        snapshot_on_shutdown=not args.no_shutdown_snapshot,
        shutdown_grace_seconds=args.grace_seconds,
        open_orders_max_per_account=args.open_orders_max_per_account,
        broker=args.broker,
        history_window_per_account=args.history_window_per_account,
    )
