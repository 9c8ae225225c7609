"""Fencing: a second Sequencer.open on the directory stops the first one for good."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import Deposit
from core.engine.testing import BTC
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import StepClock, btc_usdt_setup_commands
from core.wal import FencedError

OPTIONS = SequencerOptions(snapshot_every_commands=0)


def deposit(transfer_id: str) -> Deposit:
    return Deposit(account_id="alice", asset="BTC", amount=BTC, transfer_id=transfer_id)


async def test_a_superseded_sequencer_is_fenced_and_applies_nothing(tmp_path: Path) -> None:
    old = Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS)
    await old.submit([*btc_usdt_setup_commands(), deposit("t-1")])
    hash_before = old.engine.state_hash()

    new = Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS)
    assert new.epoch == old.epoch + 1
    assert new.engine_seq == 4
    assert new.engine.state_hash() == hash_before

    with pytest.raises(FencedError):
        await old.submit([deposit("t-2")])
    assert old.engine_seq == 4
    assert old.engine.state_hash() == hash_before  # nothing applied
    with pytest.raises(FencedError):
        await old.submit([deposit("t-3")])  # refused for good
    with pytest.raises(FencedError):
        await old.snapshot()
    assert new.wal.last_seq == 4  # the fenced writer did not write a byte

    (result,) = await new.submit([deposit("t-2")])
    assert result.outcome.engine_seq == 5
    assert new.engine.balance("alice", "BTC").available == 2 * BTC
    new.replay_check()
    await old.aclose()
    await new.aclose()

    async with Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS) as third:
        assert third.epoch == 3
        assert third.engine_seq == 5
        assert third.engine.balance("alice", "BTC").available == 2 * BTC


async def test_an_old_snapshot_writer_is_fenced_too(tmp_path: Path) -> None:
    old = Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS)
    await old.submit(btc_usdt_setup_commands())
    async with Sequencer.open(tmp_path, clock=StepClock(), options=OPTIONS) as new:
        with pytest.raises(FencedError):
            await old.snapshot()
        assert not list(tmp_path.glob("snapshot-*.bin"))
        with pytest.raises(FencedError):
            await old.submit([deposit("t-1")])
        assert new.engine_seq == 3
    await old.aclose()
