"""The engine's state at an earlier engine seq, for GetStateHash and GetEngineBalances.

How "at a seq" is answered (docs/adr/0008):
- 0 or the current engine seq: the live engine, read in one event-loop step (consistent).
- an earlier seq S: rebuilt in a worker thread from the newest snapshot file at or before S
  (or a fresh engine when the WAL still starts at seq 1) plus the WAL records up to S with
  their logged timestamps. The engine is deterministic, so this IS the state at S.
- a seq after the current one, or one whose snapshot and WAL records are no longer kept
  (segments are removed after snapshots): FIELD_INVALID on `at_engine_seq`.
Cost: O(state at the snapshot + records replayed), off the event loop.

With the state comes `last_event_engine_seq`: the newest command at or before the seq that
produced events (the live one from the history sink; a rebuilt one starts from the order
history checkpoint kept beside the base snapshot and follows the replayed records; 0 when the
base snapshot has no checkpoint and no replayed record produced events: unknown).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Final

from core.contracts.errors import field_invalid
from core.engine import Engine, EngineConfig
from core.sequencer import Sequencer, decode_command
from core.service.history_sink import HistorySink, checkpoint_last_event_engine_seq
from core.wal import SnapshotError, WalError, WriteAheadLog
from core.wal.snapshots import decode_snapshot, snapshot_name

_SNAPSHOT_FILE: Final = re.compile(r"^snapshot-(\d{20})\.bin$")
_FIELD: Final = "at_engine_seq"


def _snapshot_seqs(directory: Path) -> list[int]:
    seqs = []
    for path in directory.iterdir():
        match = _SNAPSHOT_FILE.match(path.name)
        if match:
            seqs.append(int(match.group(1)))
    return sorted(seqs)


def rebuild_engine(
    directory: Path, wal: WriteAheadLog, engine_config: EngineConfig | None, engine_seq: int
) -> tuple[Engine, int]:
    """(the engine at `engine_seq`, last_event_engine_seq) from snapshot + WAL (blocking;
    run it in a thread)."""
    bases = [seq for seq in _snapshot_seqs(directory) if seq <= engine_seq]
    engine: Engine | None = None
    base_seq = 0
    for seq in reversed(bases):
        try:
            data = (directory / snapshot_name(seq)).read_bytes()
            engine = Engine.from_snapshot(decode_snapshot(data, engine_seq=seq))
        except (OSError, SnapshotError):
            continue  # pruned meanwhile, or corrupt: try an older one
        base_seq = seq
        break
    if engine is None:
        engine = Engine(engine_config)
    last_event_engine_seq = checkpoint_last_event_engine_seq(directory, base_seq)
    if base_seq == engine_seq:
        return engine, last_event_engine_seq
    if wal.first_seq > base_seq + 1:
        raise field_invalid(_FIELD, f"engine seq {engine_seq} is no longer retained")
    for record in wal.replay(base_seq + 1):
        decoded = decode_command(record.payload)
        result = engine.apply(
            decoded.command, engine_seq=record.seq, timestamp_ns=decoded.timestamp_ns
        )
        if result.events:
            last_event_engine_seq = record.seq
        if record.seq >= engine_seq:
            break
    return engine, last_event_engine_seq


async def engine_at(
    sequencer: Sequencer, history_sink: HistorySink, at_engine_seq: int
) -> tuple[Engine, int, int]:
    """(engine, its seq, last_event_engine_seq): the live engine for 0 / the current seq,
    else a rebuilt one."""
    current = sequencer.engine_seq
    if at_engine_seq in {0, current}:
        return sequencer.engine, current, history_sink.last_event_engine_seq
    if at_engine_seq > current:
        raise field_invalid(_FIELD, f"engine seq {at_engine_seq} is after the current {current}")
    try:
        engine, last_event_engine_seq = await asyncio.to_thread(
            rebuild_engine,
            sequencer.directory,
            sequencer.wal,
            sequencer.options.engine_config,
            at_engine_seq,
        )
    except WalError as error:
        raise field_invalid(_FIELD, f"engine seq {at_engine_seq} cannot be rebuilt") from error
    return engine, at_engine_seq, last_event_engine_seq
