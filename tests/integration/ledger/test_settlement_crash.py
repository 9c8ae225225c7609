"""SIGKILL the consumer between its inserts and its commit, or at random moments: a restart
posts every event exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.local.kafka_broker import LocalBroker
from ledger.consumer import ConsumerOptions, SettlementConsumer
from ledger.db.offsets import stored_offsets
from ledger.settlement import Settlement
from tests.integration.ledger.kafka_support import (
    create_topic,
    drain,
    expected_balances,
    publish,
    shard_events,
)
from tests.integration.ledger.ledger_support import LedgerDatabase
from tests.paths import REPO_ROOT

CHILD = Path(__file__).with_name("settlement_consumer_child.py")
ROUNDS = 50


def _start_child(broker: LocalBroker, database: LedgerDatabase, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), broker.bootstrap_servers, database.service_url, mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def _wait_for_line(child: subprocess.Popen[str], prefix: str, timeout_seconds: float) -> str:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and child.poll() is not None:
            break
    child.kill()
    pytest.fail(f"the child never printed {prefix!r}")


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.stdout is not None
    child.stdout.close()


async def _finish_and_check(
    broker: LocalBroker, engine: AsyncEngine, database: LedgerDatabase, events: int
) -> None:
    options = ConsumerOptions(broker.bootstrap_servers, partitions=[0])
    async with SettlementConsumer(Settlement(engine), engine, options) as consumer:
        already = (await stored_offsets(engine, options.consumer_group, options.topic)).get(0, 0)
        await drain(consumer, events - already)
    assert database.balances() == expected_balances(shards=1, rounds=ROUNDS)
    assert database.count("journal_entries") == 2 + 4 * ROUNDS


async def test_killed_between_inserts_and_commit(
    kafka_broker: LocalBroker, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    events = shard_events("shard-1", rounds=ROUNDS)
    await create_topic(kafka_broker.bootstrap_servers, partitions=1)
    await publish(kafka_broker.bootstrap_servers, events, partition=0)
    child = _start_child(kafka_broker, ledger_database, "hang-before-commit")
    _wait_for_line(child, "inserted", timeout_seconds=30)
    _kill(child)
    assert ledger_database.count("journal_entries") == 0
    assert ledger_database.count("consumer_offsets") == 0
    await _finish_and_check(kafka_broker, ledger_engine, ledger_database, len(events))


async def test_killed_at_random_moments(
    kafka_broker: LocalBroker, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed}")
    chooser = random.Random(seed)
    events = shard_events("shard-1", rounds=ROUNDS)
    await create_topic(kafka_broker.bootstrap_servers, partitions=1)
    await publish(kafka_broker.bootstrap_servers, events, partition=0)
    for _ in range(3):
        child = _start_child(kafka_broker, ledger_database, "run")
        _wait_for_line(child, "ready", timeout_seconds=30)
        time.sleep(chooser.uniform(0.0, 0.15))
        _kill(child)
    await _finish_and_check(kafka_broker, ledger_engine, ledger_database, len(events))
