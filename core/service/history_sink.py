"""The sequencer's event sink of the service: feeds the order history in seq order, live and
during recovery replay, and checkpoints it beside every engine snapshot.

Why here and not a gateway listener: recovery replays the WAL after the snapshot through the
sink, so the history (core/service/order_history.py) is rebuilt exactly as it was before a
crash — given its state at the snapshot's seq, which this sink writes next to the snapshot:

- `wait_durable(S)` is awaited by `Sequencer.snapshot()` in the same event-loop step as the
  engine's capture at S (core/sequencer/README.md, "Event sink"). Its synchronous part copies
  the history (`OrderHistory.capture`, O(records)); then the inner sink (the outbox journal)
  is awaited, and the checkpoint `history-<S>.bin` is written (temp file, fsync, rename,
  directory fsync) in a thread, BEFORE the engine snapshot file: a snapshot at S exists only
  if its checkpoint does. Checkpoints older than the oldest kept snapshot are removed. No
  fsync on the submit path: only snapshots write.
- `start(S)` restores the checkpoint at the recovered snapshot's seq S (nothing when S = 0:
  the replay from seq 1 rebuilds everything). A snapshot without a readable checkpoint (one
  written before checkpoints existed) seeds open orders from the engine instead, and says so.
- It also tracks `last_event_engine_seq`: the newest applied command that produced events
  (the ledger learns engine seqs from events only; GetEngineBalances reports it so
  reconciliation knows which seq a caught-up ledger has seen). Kept in the checkpoint.

Checkpoint file: `EXHIST01` · seq u64 · last_event_engine_seq u64 · crc32 u32 (of the
payload) · payload = pickle of the `HistoryCapture`'s three mappings (rows of plain values
and enums; a fill as its constructor's arguments). It is the shard's own file, trusted like
the WAL. Content is a deterministic function of the WAL prefix up to S; a fenced older
owner writing one at S writes the same content.
"""

from __future__ import annotations

import asyncio
import pickle
import re
import struct
import zlib
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Final

from core.contracts.orders import FillRecord
from core.engine import ApplyResult, Command, Engine
from core.sequencer import EventSink, EventSinkStart
from core.service.errors import LOGGER
from core.service.order_history import HistoryCapture, OrderHistory
from core.wal.durable_files import write_file_atomically

CHECKPOINT_MAGIC: Final = b"EXHIST01"
_HEADER: Final = struct.Struct("<8sQQI")
_CHECKPOINT_FILE: Final = re.compile(r"^history-(\d{20})\.bin$")
_SNAPSHOT_FILE: Final = re.compile(r"^snapshot-(\d{20})\.bin$")
# FillRecord's constructor order: a fill is stored as the tuple of its arguments.
_fill_fields: Final = attrgetter(
    "trade_id",
    "order_id",
    "client_order_id",
    "symbol",
    "side",
    "is_maker",
    "price",
    "quantity",
    "quote_quantity",
    "fee",
    "fee_asset",
    "executed_ns",
    "engine_seq",
)


class HistoryCheckpointError(Exception):
    """A checkpoint file is missing, truncated or does not verify."""


def checkpoint_path(directory: Path, engine_seq: int) -> Path:
    return directory / f"history-{engine_seq:020d}.bin"


def encode_checkpoint(
    engine_seq: int, last_event_engine_seq: int, capture: HistoryCapture
) -> bytes:
    payload = pickle.dumps(
        (
            capture.orders,
            capture.client_order_ids,
            {
                account_id: [_fill_fields(fill) for fill in fills]
                for account_id, fills in capture.fills.items()
            },
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    header = _HEADER.pack(CHECKPOINT_MAGIC, engine_seq, last_event_engine_seq, zlib.crc32(payload))
    return header + payload


def _read_header(data: bytes, engine_seq: int) -> int:
    """The checkpoint's last_event_engine_seq, after checking magic and seq."""
    if len(data) < _HEADER.size:
        raise HistoryCheckpointError(f"checkpoint at seq {engine_seq} is truncated")
    magic, seq, last_event_engine_seq, _ = _HEADER.unpack_from(data)
    if magic != CHECKPOINT_MAGIC or seq != engine_seq:
        raise HistoryCheckpointError(f"checkpoint at seq {engine_seq} has a wrong header")
    return int(last_event_engine_seq)


def decode_checkpoint(data: bytes, engine_seq: int) -> tuple[int, HistoryCapture]:
    """(last_event_engine_seq, capture) of a checkpoint file's bytes at `engine_seq`."""
    last_event_engine_seq = _read_header(data, engine_seq)
    crc = _HEADER.unpack_from(data)[3]
    payload = data[_HEADER.size :]
    if zlib.crc32(payload) != crc:
        raise HistoryCheckpointError(f"checkpoint at seq {engine_seq} fails its checksum")
    orders, client_order_ids, fill_rows = pickle.loads(payload)  # noqa: S301  (own file)
    fills = {
        account_id: [FillRecord(*row) for row in rows] for account_id, rows in fill_rows.items()
    }
    return last_event_engine_seq, HistoryCapture(orders, client_order_ids, fills)


def checkpoint_last_event_engine_seq(directory: Path, engine_seq: int) -> int:
    """The last_event_engine_seq kept with the checkpoint at `engine_seq`; 0 when there is
    none (0 means unknown to every reader)."""
    if engine_seq == 0:
        return 0
    try:
        with checkpoint_path(directory, engine_seq).open("rb") as file:
            return _read_header(file.read(_HEADER.size), engine_seq)
    except (OSError, HistoryCheckpointError):
        return 0


def _seqs(directory: Path, pattern: re.Pattern[str]) -> list[int]:
    return sorted(
        int(match.group(1))
        for path in directory.iterdir()
        if (match := pattern.match(path.name)) is not None
    )


def _write_and_prune(directory: Path, engine_seq: int, data: bytes) -> None:
    write_file_atomically(checkpoint_path(directory, engine_seq), data)
    snapshots = _seqs(directory, _SNAPSHOT_FILE)
    oldest_kept = min([*snapshots, engine_seq])
    for seq in _seqs(directory, _CHECKPOINT_FILE):
        if seq < oldest_kept:
            checkpoint_path(directory, seq).unlink(missing_ok=True)


class HistorySink:
    """EventSink: the order history's feed and checkpoints, in front of an optional inner
    sink (the outbox journal), which sees every call first."""

    def __init__(self, inner: EventSink | None = None, **history_bounds: int) -> None:
        self._inner = inner
        self._engine: Engine | None = None
        self._directory: Path | None = None
        self.history = OrderHistory(self._live_engine, **history_bounds)
        self.applied_seq = 0
        self.last_event_engine_seq = 0
        self.restored_from = ""  # "checkpoint", "engine books" or "" (nothing to restore)

    def _live_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the history sink was not started by Sequencer.open")
        return self._engine

    def start(self, start: EventSinkStart) -> None:
        if self._inner is not None:
            self._inner.start(start)
        self._engine = start.engine
        self._directory = start.directory
        self.applied_seq = start.snapshot_seq
        if start.snapshot_seq == 0:
            return
        try:
            data = checkpoint_path(start.directory, start.snapshot_seq).read_bytes()
            self.last_event_engine_seq, capture = decode_checkpoint(data, start.snapshot_seq)
        except (OSError, HistoryCheckpointError) as error:
            LOGGER.warning(
                "no usable order history checkpoint at snapshot seq %d (%s): open orders "
                "are seeded from the engine; closed orders and fills before it are not kept",
                start.snapshot_seq,
                error,
            )
            self.history.seed_from_engine()
            self.restored_from = "engine books"
            return
        self.history.restore(capture)
        self.restored_from = "checkpoint"

    def applied(
        self, first_seq: int, commands: Sequence[Command], results: Sequence[ApplyResult]
    ) -> None:
        if self._inner is not None:
            self._inner.applied(first_seq, commands, results)
        self.history.record(commands, results)
        for index in range(len(results) - 1, -1, -1):
            if results[index].events:
                self.last_event_engine_seq = first_seq + index
                break
        self.applied_seq = first_seq + len(results) - 1

    async def wait_durable(self, engine_seq: int) -> None:
        # Synchronous part: the same event-loop step as the engine's capture at engine_seq.
        if engine_seq != self.applied_seq or self._directory is None:
            raise RuntimeError(
                f"snapshot at seq {engine_seq} but the history is at {self.applied_seq}"
            )
        capture = self.history.capture()
        last_event_engine_seq = self.last_event_engine_seq
        if self._inner is not None:
            await self._inner.wait_durable(engine_seq)
        directory = self._directory

        def write() -> None:
            data = encode_checkpoint(engine_seq, last_event_engine_seq, capture)
            _write_and_prune(directory, engine_seq, data)

        await asyncio.to_thread(write)
