"""The engine's state at an earlier engine seq, for GetStateHash and GetEngineBalances.

How "at a seq" is answered (docs/adr/0008, docs/adr/0020):
- 0 or the current engine seq: the live engine, read in one event-loop step (consistent).
- an earlier seq S: rebuilt in a worker thread, the engine being deterministic:
  - from the newest snapshot file at or before S (or a fresh engine when the WAL still starts
    at seq 1) plus the WAL records up to S with their logged timestamps; or
  - from the engine rebuilt for the previous request, when it is at or before S and closer
    to S than that snapshot: only the records after it are applied, read from the byte where
    the previous rebuild stopped. The ledger's reconciliation asks for the seq it has settled
    through, a little behind the live seq and rising: each request costs the commands since
    the previous one, not the commands since the last snapshot (that grew with the traffic
    between snapshots, and at the soak's 200 orders/s a rebuild took longer than the ledger
    waited, so rebuilds piled up in threads: the core's CPU and memory went to them).
- a seq after the current one, or one whose snapshot and WAL records are no longer kept
  (segments are removed after snapshots): FIELD_INVALID on `at_engine_seq`.
Rebuilds run one at a time (a request waits for the one before it; one abandoned by its
caller still finishes and is kept for the next). At most one rebuilt engine is kept: memory is
one more copy of the engine's state, bounded as the live engine is.

With the state comes `last_event_engine_seq`: the newest command at or before the seq that
produced events (the live one from the history sink; a rebuilt one starts from the order
history checkpoint kept beside the base snapshot and follows the replayed records; 0 when the
base snapshot has no checkpoint and no replayed record produced events: unknown).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from core.contracts.errors import field_invalid
from core.engine import Engine, EngineConfig
from core.sequencer import Sequencer, decode_command
from core.service.history_sink import HistorySink, checkpoint_last_event_engine_seq
from core.wal import SnapshotError, WalError, WriteAheadLog
from core.wal.log import LogReader
from core.wal.snapshots import decode_snapshot, snapshot_name

_SNAPSHOT_FILE: Final = re.compile(r"^snapshot-(\d{20})\.bin$")
_FIELD: Final = "at_engine_seq"

ResultT = TypeVar("ResultT")
Read = Callable[[Engine, int, int], ResultT]  # (engine, engine_seq, last_event_engine_seq)


def _snapshot_seqs(directory: Path) -> list[int]:
    seqs = []
    for path in directory.iterdir():
        match = _SNAPSHOT_FILE.match(path.name)
        if match:
            seqs.append(int(match.group(1)))
    return sorted(seqs)


@dataclass(slots=True)
class RebuiltEngine:
    """An engine at `engine_seq`, and the WAL reader positioned at the next record."""

    engine: Engine
    engine_seq: int
    last_event_engine_seq: int
    reader: LogReader
    records_applied: int = 0  # by the rebuild that returned it (for tests and benches)


def _advance(rebuilt: RebuiltEngine, engine_seq: int) -> RebuiltEngine:
    """Applies the WAL records after `rebuilt.engine_seq` through `engine_seq` to its engine
    (in place: a failure part-way leaves it unusable, the caller drops it)."""
    engine = rebuilt.engine
    applied = 0
    if engine_seq > rebuilt.engine_seq:
        for record in rebuilt.reader.read_through(engine_seq):
            decoded = decode_command(record.payload)
            result = engine.apply(
                decoded.command, engine_seq=record.seq, timestamp_ns=decoded.timestamp_ns
            )
            if result.events:
                rebuilt.last_event_engine_seq = record.seq
            applied += 1
    rebuilt.engine_seq = engine_seq
    rebuilt.records_applied = applied
    return rebuilt


def _from_snapshot(
    directory: Path, wal: WriteAheadLog, engine_config: EngineConfig | None, base_seqs: list[int]
) -> RebuiltEngine:
    """The engine at the newest of `base_seqs` whose snapshot still loads (at 0: a fresh one
    with the WAL from seq 1)."""
    for seq in reversed(base_seqs):
        try:
            data = (directory / snapshot_name(seq)).read_bytes()
            engine = Engine.from_snapshot(decode_snapshot(data, engine_seq=seq))
        except (OSError, SnapshotError):
            continue  # pruned meanwhile, or corrupt: try an older one
        last_event_engine_seq = checkpoint_last_event_engine_seq(directory, seq)
        return RebuiltEngine(engine, seq, last_event_engine_seq, LogReader(wal, seq + 1))
    return RebuiltEngine(Engine(engine_config), 0, 0, LogReader(wal, 1))


def rebuild_engine(
    directory: Path,
    wal: WriteAheadLog,
    engine_config: EngineConfig | None,
    engine_seq: int,
    previous: RebuiltEngine | None = None,
) -> RebuiltEngine:
    """The engine at `engine_seq` from the closest of: `previous` (brought forward in place,
    when it is at or before `engine_seq`) and the newest snapshot at or before it (blocking;
    run it in a thread)."""
    bases = [seq for seq in _snapshot_seqs(directory) if seq <= engine_seq]
    newest_base = bases[-1] if bases else 0
    if previous is not None and newest_base <= previous.engine_seq <= engine_seq:
        return _advance(previous, engine_seq)
    rebuilt = _from_snapshot(directory, wal, engine_config, bases)
    if rebuilt.engine_seq < engine_seq and wal.first_seq > rebuilt.engine_seq + 1:
        raise field_invalid(_FIELD, f"engine seq {engine_seq} is no longer retained")
    return _advance(rebuilt, engine_seq)


@dataclass(slots=True)
class _Request:
    engine_seq: int
    abandoned: bool = False


class HistoricalStates:
    """Answers "the engine at seq S" for the admin service (see the module docstring)."""

    def __init__(self, sequencer: Sequencer, history_sink: HistorySink) -> None:
        self._sequencer = sequencer
        self._history_sink = history_sink
        self._lock = asyncio.Lock()
        self._kept: RebuiltEngine | None = None
        self._rebuilding: set[asyncio.Task[object]] = set()
        self.rebuilds = 0  # requests answered by a rebuild (not the live engine)
        self.records_applied = 0  # WAL records applied by all rebuilds

    async def read_at(self, at_engine_seq: int, read: Read[ResultT]) -> ResultT:
        """`read(engine, its seq, last_event_engine_seq)`: of the live engine for 0 / the
        current seq, else of a rebuilt one, called in the event loop in the step the state
        is ready (a rebuilt engine is brought forward in place by the next request, so it
        never leaves this class). A caller that goes away (deadline, cancel) does not stop
        its rebuild: the next request starts from it."""
        sequencer = self._sequencer
        current = sequencer.engine_seq
        if at_engine_seq in {0, current}:
            return read(sequencer.engine, current, self._history_sink.last_event_engine_seq)
        if at_engine_seq > current:
            raise field_invalid(
                _FIELD, f"engine seq {at_engine_seq} is after the current {current}"
            )
        request = _Request(at_engine_seq)
        task = asyncio.create_task(self._rebuild_and_read(request, read))
        self._rebuilding.add(task)
        task.add_done_callback(self._rebuilt)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            request.abandoned = True  # not started yet: it will not be
            raise

    def _rebuilt(self, task: asyncio.Task[object]) -> None:
        self._rebuilding.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away does not need it

    async def _rebuild_and_read(self, request: _Request, read: Read[ResultT]) -> ResultT:
        sequencer = self._sequencer
        at_engine_seq = request.engine_seq
        async with self._lock:
            if request.abandoned:  # its caller went away while an earlier rebuild ran
                raise asyncio.CancelledError
            kept, self._kept = self._kept, None  # dropped unless the rebuild succeeds
            try:
                rebuilt = await asyncio.to_thread(
                    rebuild_engine,
                    sequencer.directory,
                    sequencer.wal,
                    sequencer.options.engine_config,
                    at_engine_seq,
                    kept,
                )
            except WalError as error:
                raise field_invalid(
                    _FIELD, f"engine seq {at_engine_seq} cannot be rebuilt"
                ) from error
            self._kept = rebuilt
            self.rebuilds += 1
            self.records_applied += rebuilt.records_applied
            return read(rebuilt.engine, at_engine_seq, rebuilt.last_event_engine_seq)
