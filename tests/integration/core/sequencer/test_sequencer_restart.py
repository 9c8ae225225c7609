"""Sequencer: submit, restart, snapshots, recovery reports, idempotent retries, replay check.

Real files in tmp_path. The reference for "same state" is an engine that was never restarted,
fed the same commands with the same engine_seq / timestamp (core.engine.testing.EngineDriver
numbers exactly like the sequencer with a default StepClock).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.engine import (
    ApplyResult,
    Command,
    Deposit,
    OrderAccepted,
    OrderStatus,
    RejectReason,
    Side,
    Withdraw,
)
from core.engine.testing import BTC, USDT, EngineDriver, limit_order
from core.sequencer import (
    RecoveryError,
    ReplayMismatchError,
    Sequencer,
    SequencerClosedError,
    SequencerOptions,
    decode_command,
)
from core.sequencer.testing import CLOCK_NS_START, CLOCK_NS_STEP, StepClock, btc_usdt_setup_commands
from core.wal import WalOptions

NO_AUTO_SNAPSHOT = SequencerOptions(snapshot_every_commands=0)


def funding_and_orders() -> list[Command]:
    return [
        Deposit(account_id="alice", asset="USDT", amount=1_000_000 * USDT, transfer_id="t-a1"),
        Deposit(account_id="bob", asset="BTC", amount=10 * BTC, transfer_id="t-b1"),
        limit_order("alice", Side.BUY, BTC, 50_000 * USDT, client_order_id="a-1"),
        limit_order("bob", Side.SELL, BTC // 2, 50_000 * USDT, client_order_id="b-1"),
        limit_order("bob", Side.SELL, BTC, 51_000 * USDT, client_order_id="b-2"),
    ]


def more_orders(round_index: int) -> list[Command]:
    return [
        limit_order(
            "alice", Side.BUY, BTC // 10, 49_000 * USDT, client_order_id=f"a-r{round_index}"
        ),
        limit_order(
            "bob", Side.SELL, BTC // 10, 49_000 * USDT, client_order_id=f"b-r{round_index}"
        ),
        Withdraw(
            account_id="alice", asset="BTC", amount=BTC // 100, transfer_id=f"w-{round_index}"
        ),
    ]


def reference(commands: list[Command]) -> EngineDriver:
    driver = EngineDriver()
    for command in commands:
        driver.apply(command)
    return driver


async def test_submit_returns_results_in_seq_order_with_clock_timestamps(tmp_path: Path) -> None:
    commands = btc_usdt_setup_commands() + funding_and_orders()
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as sequencer:
        assert sequencer.recovery.engine_seq == 0
        assert sequencer.recovery.snapshot_seq == 0
        assert sequencer.epoch == 1
        results = await sequencer.submit(commands)
        assert [result.outcome.engine_seq for result in results] == list(range(1, 9))
        assert all(result.outcome.accepted for result in results)
        assert sequencer.engine_seq == 8
        assert sequencer.durable_engine_seq == 8
        assert results[6].outcome.status is OrderStatus.FILLED  # bob's sell crossed alice
        accepted = [event for event in results[5].events if isinstance(event, OrderAccepted)]
        assert accepted[0].timestamp_ns == CLOCK_NS_START + 6 * CLOCK_NS_STEP
        # the WAL holds exactly these commands, in order, with their timestamps
        logged = [decode_command(record.payload) for record in sequencer.wal.replay()]
        assert [entry.command for entry in logged] == commands
        assert [entry.timestamp_ns for entry in logged] == [
            CLOCK_NS_START + seq * CLOCK_NS_STEP for seq in range(1, 9)
        ]
        assert await sequencer.submit([]) == []
        assert sequencer.engine.state_hash() == reference(commands).engine.state_hash()
    with pytest.raises(SequencerClosedError):
        await sequencer.submit(commands[:1])


async def test_restart_recovers_the_same_state(tmp_path: Path) -> None:
    clock = StepClock()
    commands = btc_usdt_setup_commands() + funding_and_orders()
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as sequencer:
        await sequencer.submit(commands[:4])
        await sequencer.submit(commands[4:])
        hash_before = sequencer.engine.state_hash()
        balances_before = sequencer.engine.all_balances()
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as reopened:
        assert reopened.epoch == 2
        assert reopened.recovery.snapshot_seq == 0
        assert reopened.recovery.replayed_count == 8
        assert reopened.recovery.tail_cut is None
        assert reopened.engine_seq == 8
        assert reopened.engine.state_hash() == hash_before
        assert reopened.engine.all_balances() == balances_before
        assert reopened.replay_check().state_hash == hash_before
        # and it continues at the next seq
        results = await reopened.submit(more_orders(0))
        assert results[0].outcome.engine_seq == 9


async def test_snapshot_then_tail_recovers_like_a_never_restarted_engine(tmp_path: Path) -> None:
    clock = StepClock()
    fed: list[Command] = btc_usdt_setup_commands() + funding_and_orders()
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as sequencer:
        await sequencer.submit(fed)
        assert await sequencer.snapshot() == 8
        assert sequencer.snapshot_seq == 8
        for round_index in range(3):
            batch = more_orders(round_index)
            await sequencer.submit(batch)
            fed += batch
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as reopened:
        assert reopened.recovery.snapshot_seq == 8
        assert reopened.recovery.replayed_count == 9
        assert reopened.engine_seq == 17
        never_restarted = reference(fed)
        assert reopened.engine.state_hash() == never_restarted.engine.state_hash()
        assert reopened.engine.all_balances() == never_restarted.engine.all_balances()
        check = reopened.replay_check()
        assert check.base_snapshot_seq == 0  # the WAL still starts at seq 1
        assert check.replayed_count == 17
        reopened.engine.check_invariants()


async def test_automatic_snapshots_and_wal_segment_removal(tmp_path: Path) -> None:
    options = SequencerOptions(
        snapshot_every_commands=10,
        snapshot_keep_count=2,
        wal_options=WalOptions(segment_bytes_max=512, record_bytes_max=256),
    )
    clock = StepClock()
    fed: list[Command] = btc_usdt_setup_commands() + funding_and_orders()
    async with Sequencer.open(tmp_path, clock=clock, options=options) as sequencer:
        await sequencer.submit(fed)
        for round_index in range(20):
            batch = more_orders(round_index)
            await sequencer.submit(batch)
            fed += batch
            await asyncio.sleep(0.01)  # let the background snapshot run
        assert sequencer.snapshot_error is None
        assert sequencer.snapshot_seq >= 50
        assert sequencer.wal.first_seq > 1  # old segments were removed
        check = sequencer.replay_check()  # from the oldest kept snapshot
        assert check.base_snapshot_seq > 0
        final_hash = sequencer.engine.state_hash()
    snapshot_files = sorted(tmp_path.glob("snapshot-*.bin"))
    assert len(snapshot_files) == 2
    async with Sequencer.open(tmp_path, clock=clock, options=options) as reopened:
        assert reopened.recovery.snapshot_seq == int(snapshot_files[-1].stem.split("-")[1])
        assert reopened.engine.state_hash() == final_hash
        assert final_hash == reference(fed).engine.state_hash()
    # the newest snapshot damaged: recovery falls back to the older one, the WAL still covers it
    damaged = bytearray(snapshot_files[-1].read_bytes())
    damaged[-1] ^= 0xFF
    snapshot_files[-1].write_bytes(bytes(damaged))
    async with Sequencer.open(tmp_path, clock=clock, options=options) as fallback:
        assert len(fallback.recovery.corrupt_snapshots) == 1
        assert fallback.recovery.snapshot_seq == int(snapshot_files[0].stem.split("-")[1])
        assert fallback.engine.state_hash() == final_hash


async def test_exact_retries_are_logged_again_and_return_the_original_outcome(
    tmp_path: Path,
) -> None:
    clock = StepClock()
    setup = btc_usdt_setup_commands() + funding_and_orders()
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as sequencer:
        originals = await sequencer.submit(setup)
        hash_before = sequencer.engine.state_hash()
    retried = [setup[3], setup[5], setup[6]]  # a deposit and two orders, exact retries
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as reopened:
        results = await reopened.submit(retried)
        assert [result.duplicate for result in results] == [True, True, True]
        assert [result.outcome for result in results] == [
            originals[3].outcome,
            originals[5].outcome,
            originals[6].outcome,
        ]
        assert all(result.events == () for result in results)
        assert reopened.engine.state_hash() == hash_before
        assert reopened.engine_seq == 11  # the retries were logged (seqs 9..11)
        assert reopened.wal.last_seq == 11
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as again:
        assert again.engine.state_hash() == hash_before
        assert again.replay_check().replayed_count == 11


async def test_rejected_commands_are_logged_and_rejected_again_on_replay(tmp_path: Path) -> None:
    clock = StepClock()
    too_big = limit_order("carol", Side.BUY, BTC, 50_000 * USDT, client_order_id="c-1")
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
        (rejected,) = await sequencer.submit([too_big])
        assert rejected.outcome.reason is RejectReason.INSUFFICIENT_BALANCE
        assert sequencer.wal.last_seq == 4
    async with Sequencer.open(tmp_path, clock=clock, options=NO_AUTO_SNAPSHOT) as reopened:
        assert reopened.recovery.replayed_count == 4
        (retry,) = await reopened.submit([too_big])
        assert retry.duplicate
        assert retry.outcome == rejected.outcome


async def test_a_cancelled_submitter_still_gets_its_commands_applied(tmp_path: Path) -> None:
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as sequencer:
        first = asyncio.get_running_loop().create_task(
            sequencer.submit(btc_usdt_setup_commands()[:1])
        )
        await asyncio.sleep(0)  # the submit has started and handed its commands over
        first.cancel()
        results: list[ApplyResult] = await sequencer.submit(btc_usdt_setup_commands()[1:2])
        assert results[0].outcome.engine_seq == 2
        assert sequencer.engine.assets() == {"BTC": 8, "USDT": 6}
        assert sequencer.engine_seq == 2
        sequencer.replay_check()


async def test_recovery_reports_a_torn_tail(tmp_path: Path) -> None:
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
    (segment,) = tmp_path.glob("wal-*.log")
    with segment.open("ab") as file:
        file.write(b"\x10\x00\x00\x00torn")  # half a record header
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as reopened:
        assert reopened.recovery.tail_cut is not None
        assert reopened.recovery.tail_cut.bytes_cut == 8
        assert reopened.engine_seq == 3


async def test_replay_check_detects_a_diverged_engine(tmp_path: Path) -> None:
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
        sequencer.replay_check()
        # break the contract on purpose: a command applied without going through the WAL
        sequencer.engine.apply(
            Deposit(account_id="x", asset="BTC", amount=1, transfer_id=""),
            engine_seq=4,
            timestamp_ns=0,
        )
        with pytest.raises(ReplayMismatchError):
            sequencer.replay_check()


async def test_a_snapshot_ahead_of_the_wal_stops_recovery(tmp_path: Path) -> None:
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
        await sequencer.snapshot()
    for segment in tmp_path.glob("wal-*.log"):
        segment.unlink()  # the log is lost, the snapshot says seq 3
    with pytest.raises(RecoveryError, match="ahead of the WAL"):
        Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT)
