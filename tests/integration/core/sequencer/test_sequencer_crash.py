"""Crash test with a real process: SIGKILL a submitting Sequencer, every ack must survive.

The child (sequencer_crash_child.py) prints each seq only after `submit` returned it. The
parent kills it at a seeded random moment (the seed is printed; set SEQUENCER_CRASH_SEED to
replay), reopens the shard and checks that every acknowledged deposit and order is in the
recovered engine and that the recovered state hash equals a replay of the WAL alone.
Repeated runs reopen the same directory, so later runs also recover earlier torn tails.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from core.sequencer import Sequencer
from core.sequencer.testing import StepClock
from tests.support.child_process import run_until_killed

CHILD_SCRIPT = Path(__file__).with_name("sequencer_crash_child.py")
KILL_COUNT = 4
KILL_DELAY_SECONDS_MIN = 0.05
KILL_DELAY_SECONDS_MAX = 0.7
READY_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Acknowledged:
    deposits: dict[int, tuple[str, int]]  # seq -> (account, amount)
    orders: dict[int, str]  # seq (= order id) -> account


def run_child_until_killed(
    directory: Path, run_index: int, kill_delay_seconds: float
) -> Acknowledged:
    lines = run_until_killed(
        CHILD_SCRIPT,
        str(directory),
        str(run_index),
        kill_delay_seconds=kill_delay_seconds,
        ready_timeout_seconds=READY_TIMEOUT_SECONDS,
    )
    deposits: dict[int, tuple[str, int]] = {}
    orders: dict[int, str] = {}
    for line in lines:
        fields = line.decode().split()
        if fields[1] == "D":
            deposits[int(fields[0])] = (fields[2], int(fields[3]))
        else:
            orders[int(fields[0])] = fields[2]
    return Acknowledged(deposits=deposits, orders=orders)


def test_every_acknowledged_command_survives_sigkill(tmp_path: Path) -> None:
    seed = int(os.environ.get("SEQUENCER_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"SEQUENCER_CRASH_SEED={seed}")
    rng = random.Random(seed)
    directory = tmp_path / "shard"
    all_deposits: dict[int, tuple[str, int]] = {}
    all_orders: dict[int, str] = {}
    for run_index in range(KILL_COUNT):
        kill_delay_seconds = rng.uniform(KILL_DELAY_SECONDS_MIN, KILL_DELAY_SECONDS_MAX)
        acknowledged = run_child_until_killed(directory, run_index, kill_delay_seconds)
        # A short run may ack nothing: a child that recovers more than snapshot_every_commands
        # past its snapshot first captures a snapshot (O(state) on the event loop, ~0.2 s).
        all_deposits.update(acknowledged.deposits)
        all_orders.update(acknowledged.orders)

        sequencer = Sequencer.open(directory, clock=StepClock())
        try:
            engine = sequencer.engine
            assert sequencer.engine_seq >= max(all_orders, default=0)
            lost_orders = [
                seq
                for seq, account_id in all_orders.items()
                if (view := engine.order(seq)) is None or view.account_id != account_id
            ]
            assert not lost_orders, f"seed {seed} run {run_index}: orders lost {lost_orders[:10]}"
            lost_deposits = []
            for seq, (account_id, amount) in all_deposits.items():
                balance = engine.balance(account_id, "USDT")
                if balance.available + balance.held != amount:
                    lost_deposits.append(seq)
            assert not lost_deposits, (
                f"seed {seed} run {run_index}: deposits lost {lost_deposits[:10]}"
            )
            check = sequencer.replay_check()
            assert check.base_snapshot_seq == 0  # a replay of the WAL alone, from seq 1
            assert check.engine_seq == sequencer.engine_seq
            assert check.state_hash == engine.state_hash()
            engine.check_invariants()
            recovery = sequencer.recovery
            print(
                f"run {run_index}: killed after {kill_delay_seconds:.3f} s, "
                f"{len(acknowledged.orders) * 2} acked, engine_seq {sequencer.engine_seq}, "
                f"snapshot {recovery.snapshot_seq} + {recovery.replayed_count} replayed, "
                f"tail cut: {recovery.tail_cut.reason.value if recovery.tail_cut else None}"
            )
        finally:
            sequencer.close()
    assert all_orders, f"seed {seed}: no run acknowledged anything"
