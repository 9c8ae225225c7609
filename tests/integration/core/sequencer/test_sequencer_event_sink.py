"""The sequencer's event-sink hooks (invariant 7): every applied batch reaches the sink, in
seq order, live and during recovery replay; a snapshot waits for the sink's durability.

Real files in tmp_path; the sink is a small recorder implementing the EventSink protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.engine import ApplyResult, Command, Deposit, Side
from core.engine.testing import BTC, USDT, limit_order
from core.sequencer import (
    EventSinkStart,
    Sequencer,
    SequencerFailedError,
    SequencerOptions,
)
from core.sequencer.testing import StepClock, btc_usdt_setup_commands

NO_AUTO_SNAPSHOT = SequencerOptions(snapshot_every_commands=0)


class SinkRefusedError(RuntimeError):
    pass


class RecordingSink:
    def __init__(self) -> None:
        self.start_info: EventSinkStart | None = None
        self.batches: list[tuple[int, list[Command], list[ApplyResult]]] = []
        self.durable_waits: list[int] = []
        self.release = asyncio.Event()
        self.release.set()
        self.refuse_durable = False
        self.fail_applied_after_seq: int | None = None

    def start(self, start: EventSinkStart) -> None:
        self.start_info = start

    def applied(
        self, first_seq: int, commands: Sequence[Command], results: Sequence[ApplyResult]
    ) -> None:
        if self.fail_applied_after_seq is not None and first_seq > self.fail_applied_after_seq:
            raise SinkRefusedError("sink broke")
        self.batches.append((first_seq, list(commands), list(results)))

    async def wait_durable(self, engine_seq: int) -> None:
        self.durable_waits.append(engine_seq)
        await self.release.wait()
        if self.refuse_durable:
            raise SinkRefusedError(f"not durable up to {engine_seq}")

    def seqs(self) -> list[int]:
        return [
            first_seq + offset
            for first_seq, commands, _ in self.batches
            for offset in range(len(commands))
        ]

    def results_by_seq(self) -> dict[int, ApplyResult]:
        return {
            first_seq + offset: result
            for first_seq, _, results in self.batches
            for offset, result in enumerate(results)
        }


def deposits(count: int, prefix: str) -> list[Command]:
    return [
        Deposit(account_id=f"{prefix}{index}", asset="USDT", amount=USDT, transfer_id="t")
        for index in range(count)
    ]


async def test_live_batches_reach_the_sink_in_seq_order(tmp_path: Path) -> None:
    sink = RecordingSink()
    async with Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=sink
    ) as sequencer:
        assert sink.start_info is not None
        assert (sink.start_info.snapshot_seq, sink.start_info.wal_last_seq) == (0, 0)
        assert sink.start_info.epoch == sequencer.epoch
        assert sink.start_info.engine is sequencer.engine
        await sequencer.submit(btc_usdt_setup_commands())
        results = await asyncio.gather(
            *(sequencer.submit(deposits(5, f"w{worker}-")) for worker in range(20))
        )
        assert sink.seqs() == list(range(1, sequencer.engine_seq + 1))
        recorded = sink.results_by_seq()
        for batch in results:
            for result in batch:
                assert recorded[result.outcome.engine_seq] == result


async def test_recovery_replays_the_tail_into_the_sink(tmp_path: Path) -> None:
    async with Sequencer.open(tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT) as first:
        await first.submit(btc_usdt_setup_commands())
        await first.submit(deposits(4, "a"))
        snapshot_seq = await first.snapshot()
        await first.submit([Deposit(account_id="b", asset="USDT", amount=USDT, transfer_id="t")])
        live = await first.submit(
            [limit_order("b", Side.BUY, BTC // 10_000, 50_000 * USDT, client_order_id="o")]
        )
        last_seq = first.engine_seq
    sink = RecordingSink()
    async with Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=sink
    ) as second:
        assert sink.start_info is not None
        assert (sink.start_info.snapshot_seq, sink.start_info.wal_last_seq) == (
            snapshot_seq,
            last_seq,
        )
        assert sink.seqs() == list(range(snapshot_seq + 1, last_seq + 1))
        assert sink.results_by_seq()[last_seq] == live[0]  # same events as when live
        more = await second.submit(deposits(2, "c"))
        assert sink.seqs()[-2:] == [result.outcome.engine_seq for result in more]
        sink_batches_before = len(sink.batches)
        second.replay_check()
        assert len(sink.batches) == sink_batches_before  # a replay check is not an apply


async def test_snapshot_waits_for_the_sink_to_be_durable(tmp_path: Path) -> None:
    sink = RecordingSink()
    async with Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=sink
    ) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
        sink.release.clear()
        snapshot = asyncio.create_task(sequencer.snapshot())
        await asyncio.sleep(0.05)
        assert sink.durable_waits == [3]
        assert not snapshot.done()
        assert not list(tmp_path.glob("snapshot-*.bin"))
        await sequencer.submit(deposits(1, "x"))  # submits go on while the snapshot waits
        sink.release.set()
        assert await snapshot == 3
        assert [path.name for path in tmp_path.glob("snapshot-*.bin")] == [
            "snapshot-00000000000000000003.bin"
        ]


async def test_a_sink_that_refuses_durability_fails_the_snapshot(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.refuse_durable = True
    async with Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=sink
    ) as sequencer:
        await sequencer.submit(btc_usdt_setup_commands())
        with pytest.raises(SinkRefusedError):
            await sequencer.snapshot()
        assert sequencer.snapshot_seq == 0
        assert not list(tmp_path.glob("snapshot-*.bin"))
        await sequencer.submit(deposits(1, "y"))  # not fatal: the WAL still has everything


async def test_automatic_snapshot_failure_from_the_sink_is_reported(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.refuse_durable = True
    options = SequencerOptions(snapshot_every_commands=5)
    async with Sequencer.open(
        tmp_path, clock=StepClock(), options=options, event_sink=sink
    ) as sequencer:
        await sequencer.submit([*btc_usdt_setup_commands(), *deposits(3, "z")])
        for _ in range(20):
            if sequencer.snapshot_error is not None:
                break
            await asyncio.sleep(0.01)
        assert isinstance(sequencer.snapshot_error, SinkRefusedError)
        assert sequencer.snapshot_seq == 0


async def test_a_failing_sink_stops_the_sequencer(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.fail_applied_after_seq = 3
    sequencer = Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=sink
    )
    try:
        await sequencer.submit(btc_usdt_setup_commands())
        with pytest.raises(SinkRefusedError):
            await sequencer.submit(deposits(1, "f"))
        with pytest.raises(SequencerFailedError):
            await sequencer.submit(deposits(1, "g"))
    finally:
        await sequencer.aclose()
    # The command the sink refused was durable: a reopen applies it and hands it to a sink.
    sink = RecordingSink()
    reopened = Sequencer.open(tmp_path, clock=StepClock(), event_sink=sink)
    try:
        assert reopened.engine_seq == 4
        assert sink.seqs() == [1, 2, 3, 4]
    finally:
        await reopened.aclose()
