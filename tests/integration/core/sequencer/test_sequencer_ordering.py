"""The reorder buffer: batches that become durable out of order are still applied in seq order.

The WAL's futures normally wake submitters in seq order; here a wrapper around
`append_durable` holds each durable batch back and releases them in REVERSE order, so the
sequencer's own ordering is what is tested. Also: a failed fsync stops the sequencer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.engine import ApplyResult, Deposit
from core.sequencer import Sequencer, SequencerFailedError, SequencerOptions
from core.sequencer.testing import StepClock, btc_usdt_setup_commands
from core.wal import WalFailedError

OPTIONS = SequencerOptions(snapshot_every_commands=0)
BATCH_COUNT = 6


def deposit(index: int) -> Deposit:
    return Deposit(account_id=f"acct-{index}", asset="BTC", amount=index + 1, transfer_id="t")


async def test_durable_batches_released_in_reverse_are_applied_in_seq_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
        real_append_durable = sequencer.wal.append_durable
        gates: list[asyncio.Event] = []

        async def held_back(payloads: Sequence[bytes]) -> list[int]:
            seqs = await real_append_durable(payloads)
            gate = asyncio.Event()
            gates.append(gate)
            await gate.wait()
            return seqs

        monkeypatch.setattr(sequencer.wal, "append_durable", held_back)
        loop = asyncio.get_running_loop()
        submits = [
            loop.create_task(sequencer.submit([deposit(index), deposit(index + 100)]))
            for index in range(BATCH_COUNT)
        ]
        try:
            while len(gates) < BATCH_COUNT:
                await asyncio.sleep(0.001)
            assert sequencer.durable_engine_seq == 3 + 2 * BATCH_COUNT
            for gate in reversed(gates[1:]):  # everything but the first batch
                gate.set()
                for _ in range(5):
                    await asyncio.sleep(0)
                assert sequencer.engine_seq == 3  # parked: the batch at seq 4 is not applied yet
            gates[0].set()
            results: list[list[ApplyResult]] = await asyncio.gather(*submits)
            assert sequencer.engine_seq == 3 + 2 * BATCH_COUNT
            seqs = [result.outcome.engine_seq for batch in results for result in batch]
            assert seqs == list(range(4, 4 + 2 * BATCH_COUNT))
            assert all(result.outcome.accepted for batch in results for result in batch)
        finally:
            for gate in gates:  # a failing assertion must not leave submits hanging in aclose
                gate.set()
        sequencer.replay_check()


async def test_a_failed_fsync_fails_the_submit_and_stops_the_sequencer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequencer = Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS)
    await sequencer.submit(btc_usdt_setup_commands())
    hash_before = sequencer.engine.state_hash()

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "injected EIO")

    monkeypatch.setattr(sequencer.wal, "_fsync_function", failing_fsync)
    with pytest.raises(WalFailedError):
        await sequencer.submit([deposit(1)])
    assert sequencer.engine_seq == 3
    assert sequencer.engine.state_hash() == hash_before  # not durable: not applied
    with pytest.raises(SequencerFailedError):
        await sequencer.submit([deposit(2)])
    sequencer.close()

    # The record was written but its fsync failed: it may be on disk. Recovery applies what
    # is there, exactly once; a retry with the same transfer id is then a duplicate.
    async with Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS) as reopened:
        (retry,) = await reopened.submit([deposit(1)])
        assert reopened.engine.balance("acct-1", "BTC").available == 2
        assert retry.duplicate == (reopened.recovery.engine_seq == 4)
        reopened.replay_check()
