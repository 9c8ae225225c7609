"""Concurrent submitters: seqs contiguous, applied in WAL order, results equal a replay's."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from core.engine import ApplyResult, Command, Deposit, Engine, Side
from core.engine.testing import BTC, USDT, limit_order
from core.sequencer import Sequencer, SequencerOptions, decode_command
from core.sequencer.testing import StepClock, btc_usdt_setup_commands

TASK_COUNT = 50
COMMANDS_PER_TASK = 20


def task_commands(task_index: int, rng: random.Random) -> list[Command]:
    """Fund the task's account, then place crossing orders around 50,000 (trades happen)."""
    account_id = f"trader-{task_index:02d}"
    commands: list[Command] = [
        Deposit(account_id=account_id, asset="USDT", amount=10_000_000 * USDT, transfer_id="u"),
        Deposit(account_id=account_id, asset="BTC", amount=100 * BTC, transfer_id="b"),
    ]
    for order_index in range(COMMANDS_PER_TASK - 2):
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        price = (50_000 + rng.randint(-50, 50)) * USDT
        commands.append(
            limit_order(
                account_id,
                side,
                BTC // 10_000 * rng.randint(1, 50),
                price,
                client_order_id=f"o-{order_index}",
            )
        )
    return commands


async def test_concurrent_submitters_are_applied_in_wal_order(tmp_path: Path) -> None:
    rng = random.Random(20251121)
    per_task = [task_commands(index, rng) for index in range(TASK_COUNT)]
    submitted: dict[int, tuple[Command, ApplyResult]] = {}  # seq -> what the submitter got

    async with Sequencer.open(
        tmp_path, clock=StepClock(), options=SequencerOptions(snapshot_every_commands=0)
    ) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())

        async def submitter(commands: list[Command]) -> None:
            position = 0
            seq_last = 0
            while position < len(commands):
                size = 1 if position % 3 else 2  # single commands and small batches
                batch = commands[position : position + size]
                results = await sequencer.submit(batch)
                for command, result in zip(batch, results, strict=True):
                    assert not result.duplicate
                    seq = result.outcome.engine_seq
                    assert seq > seq_last  # a submitter's own commands stay in its order
                    seq_last = seq
                    submitted[seq] = (command, result)
                position += size
                await asyncio.sleep(0)

        await asyncio.gather(*(submitter(commands) for commands in per_task))

        total = 3 + TASK_COUNT * COMMANDS_PER_TASK
        assert sequencer.engine_seq == total
        assert sequencer.durable_engine_seq == total
        assert sorted(submitted) == list(range(4, total + 1))  # contiguous, each seq once
        assert sequencer.wal.group_commit_count < total - 3  # group commit did happen
        check = sequencer.replay_check()
        assert check.replayed_count == total
        assert check.state_hash == sequencer.engine.state_hash()
        sequencer.engine.check_invariants()

        # Replaying the WAL in seq order gives every submitter exactly the result it got.
        replayed = Engine()
        timestamp_ns_last = 0
        trade_count = 0
        for record in sequencer.wal.replay():
            decoded = decode_command(record.payload)
            assert decoded.timestamp_ns >= timestamp_ns_last  # never decreases along seq
            timestamp_ns_last = decoded.timestamp_ns
            result = replayed.apply(
                decoded.command, engine_seq=record.seq, timestamp_ns=decoded.timestamp_ns
            )
            if record.seq in submitted:
                command, live_result = submitted[record.seq]
                assert decoded.command == command
                assert result == live_result
                trade_count += sum(
                    type(event).__name__ == "TradeExecuted" for event in result.events
                )
        assert trade_count > 0
