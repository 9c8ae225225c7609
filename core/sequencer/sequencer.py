"""The sequencer: one shard's Engine behind its write-ahead log.

Invariants (checked where cheap; a breach raises `SequencerInvariantError`):
1. engine_seq == WAL seq. The WAL assigns seqs (contiguous, +1, no gaps); the command logged
   at seq s is applied with `engine_seq=s` and the timestamp logged with it.
2. Log before apply. A command is applied only after `append_durable` returned its seq, so
   the engine's state is always a function of a durable WAL prefix.
3. Apply in seq order. Durable batches are parked by first seq and applied only when they
   follow the last applied seq exactly, so concurrent submitters can never reorder the engine.
4. Timestamps never decrease along seq: the clock is read and the record enqueued in the WAL
   in one event-loop step (no await in between), and the value is clamped to the last one.
5. Recovery = latest valid snapshot (at seq S) + WAL records S+1.. with their logged
   timestamps; `replay_check` rebuilds from the WAL alone and must give the same state hash.
6. Once fenced, failed or closed, the sequencer applies nothing more and refuses submits.
7. Event sink (optional, e.g. the outbox journal): `applied` is called synchronously right
   after each batch is applied, in seq order with contiguous seqs, during recovery replay
   (from snapshot + 1) and live; a snapshot at seq S is written only after
   `wait_durable(S)` returned, so the sink can never lag behind the snapshot that recovery
   starts from (events are a deterministic function of the WAL, so replay regenerates
   whatever the sink had not made durable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from core.engine import ApplyResult, Command, Engine, EngineConfig
from core.sequencer.codec import decode_command, encode_command
from core.wal import (
    CorruptSnapshot,
    EpochFence,
    FencedError,
    SnapshotStore,
    TailCut,
    WalLimitError,
    WalOptions,
    WriteAheadLog,
    acquire_epoch,
)

SNAPSHOT_EVERY_COMMANDS_DEFAULT: Final = 100_000

Clock = Callable[[], int]
"""Returns the current time in nanoseconds (production: `time.time_ns`; tests: a fake)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSinkStart:
    """What `Sequencer.open` tells its event sink before replaying the WAL tail."""

    directory: Path  # the shard directory (WAL, snapshots, fence files)
    epoch: int  # this owner's fencing epoch
    snapshot_seq: int  # recovery replays seqs snapshot_seq + 1 .. wal_last_seq
    wal_last_seq: int
    engine: Engine  # the live engine, for queries only (never call apply on it)


class EventSink(Protocol):
    """Receives every applied command's results (invariant 7). Implemented by core.outbox."""

    def start(self, start: EventSinkStart) -> None:
        """Called once by `Sequencer.open`, after the snapshot is loaded, before the replay."""

    def applied(
        self, first_seq: int, commands: Sequence[Command], results: Sequence[ApplyResult]
    ) -> None:
        """Called synchronously after commands first_seq.. were applied (recovery and live).

        Must not block or await anything (it runs on the hot path); an exception stops the
        sequencer like a failed apply.
        """

    async def wait_durable(self, engine_seq: int) -> None:
        """Return once everything received up to `engine_seq` is durable; raise to refuse.

        Awaited by `snapshot()` right after the engine's capture with no await between:
        the coroutine's synchronous part runs in the capture's event-loop step, when the
        sink has received exactly seqs up to `engine_seq` (core/service/history_sink.py
        copies its state there)."""


class SequencerError(Exception):
    """Base class of the errors raised by core.sequencer (besides the WAL's own)."""


class SequencerClosedError(SequencerError):
    """The sequencer was closed."""


class SequencerFailedError(SequencerError):
    """Applying a durable command raised; the engine can no longer be trusted. Reopen."""


class SequencerInvariantError(SequencerError):
    """The sequencer's own invariant broke (a bug, never bad input)."""


class RecoveryError(SequencerError):
    """The snapshot and the WAL do not fit together (e.g. the log lost records it needs)."""


class ReplayMismatchError(SequencerError):
    """Replaying the WAL gave a different state hash than the live engine."""


class ReplayUnavailableError(SequencerError):
    """The WAL no longer holds the records a replay check needs (removed after snapshots)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SequencerOptions:
    snapshot_every_commands: int = SNAPSHOT_EVERY_COMMANDS_DEFAULT  # 0: only explicit snapshots
    snapshot_keep_count: int = 3
    remove_wal_segments_after_snapshot: bool = True
    wal_options: WalOptions | None = None
    engine_config: EngineConfig | None = None  # for a fresh engine; a snapshot carries its own

    def __post_init__(self) -> None:
        if self.snapshot_every_commands < 0:
            raise ValueError(f"snapshot_every_commands {self.snapshot_every_commands} < 0")
        if self.snapshot_keep_count < 1:
            raise ValueError(f"snapshot_keep_count {self.snapshot_keep_count} < 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SequencerRecovery:
    """What `Sequencer.open` recovered."""

    epoch: int
    snapshot_seq: int  # 0: no snapshot, started from a fresh engine
    replayed_count: int  # WAL records applied after the snapshot
    engine_seq: int  # last seq applied (== the WAL's last seq)
    tail_cut: TailCut | None  # a torn WAL tail cut by recovery, if any
    corrupt_snapshots: tuple[CorruptSnapshot, ...]  # newer snapshots skipped as corrupt


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayCheck:
    base_snapshot_seq: int  # 0: replayed from seq 1 on a fresh engine
    replayed_count: int
    engine_seq: int
    state_hash: str


@dataclass(slots=True)
class _DurableBatch:
    first_seq: int
    commands: list[Command]
    timestamps: list[int]
    future: asyncio.Future[list[ApplyResult]] = field(repr=False)

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.commands) - 1


def _replay_into(
    engine: Engine,
    wal: WriteAheadLog,
    *,
    from_seq: int,
    to_seq: int | None,
    event_sink: EventSink | None = None,
) -> tuple[int, int]:
    """Apply WAL records from_seq..to_seq (default: the end); return (count, last timestamp)."""
    count = 0
    timestamp_ns_last = 0
    for record in wal.replay(from_seq):
        if to_seq is not None and record.seq > to_seq:
            break
        decoded = decode_command(record.payload)
        result = engine.apply(
            decoded.command, engine_seq=record.seq, timestamp_ns=decoded.timestamp_ns
        )
        if event_sink is not None:
            event_sink.applied(record.seq, (decoded.command,), (result,))
        count += 1
        timestamp_ns_last = decoded.timestamp_ns
    return count, timestamp_ns_last


class Sequencer:
    """Sequences, logs and applies the commands of one shard. Create with `Sequencer.open`."""

    def __init__(
        self,
        *,
        directory: Path,
        clock: Clock,
        options: SequencerOptions,
        fence: EpochFence,
        wal: WriteAheadLog,
        store: SnapshotStore,
        engine: Engine,
        recovery: SequencerRecovery,
        timestamp_ns_last: int,
        event_sink: EventSink | None = None,
    ) -> None:
        self.directory = directory
        self.options = options
        self.recovery = recovery
        self._clock = clock
        self._fence = fence
        self._wal = wal
        self._store = store
        self._engine = engine
        self._event_sink = event_sink
        self._engine_seq = recovery.engine_seq
        self._snapshot_seq = recovery.snapshot_seq
        self._timestamp_ns_last = timestamp_ns_last
        self._ready: dict[int, _DurableBatch] = {}  # durable, waiting for their turn
        self._tasks: set[asyncio.Task[Any]] = set()
        self._snapshot_task: asyncio.Task[None] | None = None
        self._refusal: BaseException | None = None
        self._apply_failure: BaseException | None = None
        self._closed = False
        self.snapshot_error: BaseException | None = None  # last automatic snapshot failure

    # ------------------------------------------------------------------ open / recovery

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        clock: Clock,
        options: SequencerOptions | None = None,
        event_sink: EventSink | None = None,
    ) -> Sequencer:
        """Take the shard (a new epoch fences out any older owner) and recover its state.

        With an `event_sink`, it is started (`EventSink.start`) before the WAL tail is
        replayed and then receives the replayed and every later applied batch (invariant 7).
        """
        options = options or SequencerOptions()
        epoch = acquire_epoch(directory)
        fence = EpochFence(directory, epoch)
        try:
            store = SnapshotStore(directory, keep_count=options.snapshot_keep_count, fence=fence)
            wal = WriteAheadLog.open(
                directory, epoch=epoch, fence=fence, options=options.wal_options
            )
            try:
                engine, recovery, timestamp_ns_last = cls._recover(
                    store,
                    wal,
                    directory=directory,
                    epoch=epoch,
                    engine_config=options.engine_config,
                    event_sink=event_sink,
                )
            except BaseException:
                wal.close()
                raise
        except BaseException:
            fence.close()
            raise
        return cls(
            directory=directory,
            clock=clock,
            options=options,
            fence=fence,
            wal=wal,
            store=store,
            engine=engine,
            recovery=recovery,
            timestamp_ns_last=timestamp_ns_last,
            event_sink=event_sink,
        )

    @staticmethod
    def _recover(
        store: SnapshotStore,
        wal: WriteAheadLog,
        *,
        directory: Path,
        epoch: int,
        engine_config: EngineConfig | None,
        event_sink: EventSink | None,
    ) -> tuple[Engine, SequencerRecovery, int]:
        load = store.latest_valid()
        if load.snapshot is None:
            engine = Engine(engine_config)
            snapshot_seq = 0
        else:
            engine = Engine.from_snapshot(load.snapshot.state_bytes)
            snapshot_seq = load.snapshot.engine_seq
        if snapshot_seq > wal.last_seq:
            raise RecoveryError(
                f"snapshot at seq {snapshot_seq} is ahead of the WAL (last seq {wal.last_seq})"
            )
        if snapshot_seq + 1 < wal.first_seq:
            raise RecoveryError(
                f"the WAL starts at seq {wal.first_seq}; seqs after snapshot {snapshot_seq} lost"
            )
        if event_sink is not None:
            event_sink.start(
                EventSinkStart(
                    directory=directory,
                    epoch=epoch,
                    snapshot_seq=snapshot_seq,
                    wal_last_seq=wal.last_seq,
                    engine=engine,
                )
            )
        replayed_count, timestamp_ns_last = _replay_into(
            engine, wal, from_seq=snapshot_seq + 1, to_seq=None, event_sink=event_sink
        )
        recovery = SequencerRecovery(
            epoch=epoch,
            snapshot_seq=snapshot_seq,
            replayed_count=replayed_count,
            engine_seq=wal.last_seq,
            tail_cut=wal.recovery.tail_cut,
            corrupt_snapshots=load.corrupt,
        )
        return engine, recovery, timestamp_ns_last

    # ------------------------------------------------------------------ read access

    @property
    def engine(self) -> Engine:
        """The live engine, for queries only: never call `apply` on it."""
        return self._engine

    @property
    def engine_seq(self) -> int:
        """Seq of the last command applied to the engine."""
        return self._engine_seq

    @property
    def durable_engine_seq(self) -> int:
        """Seq of the last command known durable in the WAL (>= engine_seq)."""
        return max(self._wal.durable_seq, self._engine_seq)

    @property
    def epoch(self) -> int:
        return self._fence.epoch

    @property
    def snapshot_seq(self) -> int:
        """Seq of the newest snapshot this sequencer wrote or recovered from (0: none)."""
        return self._snapshot_seq

    @property
    def wal(self) -> WriteAheadLog:
        """The log, for inspection (seqs, counters); appending to it directly breaks invariant 1."""
        return self._wal

    # ------------------------------------------------------------------ submit

    def _raise_if_refusing(self) -> None:
        if self._closed:
            raise SequencerClosedError(f"{self.directory}: sequencer closed")
        refusal = self._refusal
        if refusal is None:
            return
        if isinstance(refusal, FencedError):
            raise FencedError(f"submits refused, this sequencer was fenced: {refusal}") from refusal
        raise SequencerFailedError(f"submits refused after {refusal!r}; reopen") from refusal

    def _refuse(self, error: BaseException) -> None:
        if self._refusal is None:
            self._refusal = error

    async def submit(self, commands: Sequence[Command]) -> list[ApplyResult]:
        """Log `commands` durably (one WAL append, group-committed), then apply them in order.

        Returns one ApplyResult per command, in order. Rejections are results, not errors:
        the rejected command is logged like any other and replay rejects it again. Raises the
        WAL's `WalLimitError` (nothing logged), `FencedError` / `WalFailedError` (not
        acknowledged; the sequencer refuses from then on), `CommandEncodeError` (nothing
        logged). If the caller is cancelled, its commands are still logged and applied.
        """
        self._raise_if_refusing()
        command_list = list(commands)
        if not command_list:
            return []
        task: asyncio.Task[list[ApplyResult]] = asyncio.get_running_loop().create_task(
            self._log_and_apply(command_list)
        )
        self._track(task)
        return await asyncio.shield(task)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled submitter must not leave a warning

    async def _log_and_apply(self, commands: list[Command]) -> list[ApplyResult]:
        # From here to the WAL enqueue inside append_durable there is no await (invariant 4).
        self._raise_if_refusing()
        timestamps: list[int] = []
        payloads: list[bytes] = []
        timestamp_ns_last = self._timestamp_ns_last
        for command in commands:
            timestamp_ns_last = max(self._clock(), timestamp_ns_last)
            timestamps.append(timestamp_ns_last)
            payloads.append(encode_command(command, timestamp_ns=timestamp_ns_last))
        self._timestamp_ns_last = timestamp_ns_last
        try:
            seqs = await self._wal.append_durable(payloads)
        except WalLimitError:
            raise  # nothing was written; the log stays usable
        except BaseException as error:
            self._refuse(error)
            raise
        if len(seqs) != len(commands) or seqs[-1] - seqs[0] != len(seqs) - 1:
            raise SequencerInvariantError(f"WAL returned non-contiguous seqs {seqs[:3]}...")
        self._raise_if_failed()
        batch = _DurableBatch(
            seqs[0], commands, timestamps, asyncio.get_running_loop().create_future()
        )
        if batch.first_seq in self._ready or batch.first_seq <= self._engine_seq:
            raise SequencerInvariantError(f"seq {batch.first_seq} assigned twice")
        self._ready[batch.first_seq] = batch
        self._apply_ready()
        results = await batch.future
        self._maybe_snapshot_in_background()
        return results

    def _raise_if_failed(self) -> None:
        if self._apply_failure is not None:
            raise SequencerFailedError("an earlier apply failed; reopen") from self._apply_failure

    def _apply_ready(self) -> None:
        """Apply every parked batch that follows the last applied seq (invariants 3, 7)."""
        event_sink = self._event_sink
        while (batch := self._ready.pop(self._engine_seq + 1, None)) is not None:
            results: list[ApplyResult] = []
            try:
                for offset, command in enumerate(batch.commands):
                    results.append(
                        self._engine.apply(
                            command,
                            engine_seq=batch.first_seq + offset,
                            timestamp_ns=batch.timestamps[offset],
                        )
                    )
                if event_sink is not None:
                    event_sink.applied(batch.first_seq, batch.commands, results)
            except Exception as error:  # noqa: BLE001  (handed to the submitter, then refused)
                self._apply_failure = error
                self._refuse(error)
                batch.future.set_exception(error)
                failure = SequencerFailedError(f"apply of seq {batch.first_seq}.. failed")
                for waiting in self._ready.values():
                    waiting.future.set_exception(failure)
                self._ready.clear()
                return
            self._engine_seq = batch.last_seq
            batch.future.set_result(results)

    # ------------------------------------------------------------------ snapshots

    def _maybe_snapshot_in_background(self) -> None:
        every = self.options.snapshot_every_commands
        if every == 0 or self._engine_seq - self._snapshot_seq < every:
            return
        if self._snapshot_task is not None or self._refusal is not None or self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._automatic_snapshot())
        self._snapshot_task = task
        self._track(task)

    async def _automatic_snapshot(self) -> None:
        try:
            await self.snapshot()
        except Exception as error:  # noqa: BLE001  (reported, not fatal: the WAL has it all)
            self.snapshot_error = error
        finally:
            self._snapshot_task = None

    async def snapshot(self) -> int:
        """Write the engine state at the current engine_seq; return that seq.

        The state is captured in one event-loop step (a structural copy, consistent at
        engine_seq, no encoding); with an event sink, the write waits for
        `wait_durable(engine_seq)` (and fails if it raises); the capture is serialized (the
        bytes `engine.snapshot()` gave at that step), written and fsynced in a thread while
        submits go on. Then WAL segments wholly before the OLDEST kept snapshot are removed
        (if enabled), so every kept snapshot can still be recovered from.
        """
        self._raise_if_refusing()
        engine_seq = self._engine_seq
        captured = self._engine.capture_snapshot()

        def serialize_and_write() -> None:
            self._store.write(engine_seq, captured.serialize())

        try:
            if self._event_sink is not None:
                await self._event_sink.wait_durable(engine_seq)  # invariant 7
            await asyncio.to_thread(serialize_and_write)
        except FencedError as error:
            self._refuse(error)
            raise
        self._snapshot_seq = max(self._snapshot_seq, engine_seq)
        if self.options.remove_wal_segments_after_snapshot:
            kept_seqs = self._store.engine_seqs()
            if kept_seqs:
                await asyncio.to_thread(self._wal.remove_segments_before, kept_seqs[0] + 1)
        return engine_seq

    # ------------------------------------------------------------------ checks

    def replay_check(self) -> ReplayCheck:
        """Rebuild an engine from the WAL alone and compare its state hash with the live one.

        From seq 1 on a fresh engine if the WAL still holds it; otherwise from the oldest kept
        snapshot the WAL still covers. Raises `ReplayMismatchError` on a different hash.
        """
        target_seq = self._engine_seq
        live_hash = self._engine.state_hash()
        first_seq = self._wal.first_seq
        base_seq = 0
        if first_seq == 1:
            engine = Engine(self.options.engine_config)
        else:
            usable = [seq for seq in self._store.engine_seqs() if seq + 1 >= first_seq]
            if not usable:
                raise ReplayUnavailableError(
                    f"the WAL starts at seq {first_seq} and no kept snapshot bridges the gap"
                )
            base_seq = usable[0]
            engine = Engine.from_snapshot(self._store.load(base_seq).state_bytes)
        replayed_count = 0
        if base_seq < target_seq:
            replayed_count, _ = _replay_into(
                engine, self._wal, from_seq=base_seq + 1, to_seq=target_seq
            )
        replayed_hash = engine.state_hash()
        if replayed_hash != live_hash:
            raise ReplayMismatchError(
                f"replay of seqs {base_seq + 1}..{target_seq} gives {replayed_hash}, "
                f"live engine has {live_hash}"
            )
        return ReplayCheck(
            base_snapshot_seq=base_seq,
            replayed_count=replayed_count,
            engine_seq=target_seq,
            state_hash=replayed_hash,
        )

    # ------------------------------------------------------------------ close

    async def aclose(self) -> None:
        """Finish in-flight submits and snapshots, then close the log and the fence."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        await self._wal.aclose()
        self._fence.close()

    def close(self) -> None:
        """Close without waiting for in-flight submits (their callers get WalClosedError)."""
        self._closed = True
        self._wal.close()
        self._fence.close()

    async def __aenter__(self) -> Sequencer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
