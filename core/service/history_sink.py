"""The sequencer's event sink of the service: feeds the order history in seq order, live and
during recovery replay, and checkpoints it beside every engine snapshot.

Why here and not a gateway listener: recovery replays the WAL after the snapshot through the
sink, so the history (core/service/order_history.py) is rebuilt exactly as it was before a
crash — given its state at the snapshot's seq, which this sink writes next to the snapshot:

- `wait_durable(S)` is awaited by `Sequencer.snapshot()` in the same event-loop step as the
  engine's capture at S (core/sequencer/README.md, "Event sink"). Its synchronous part is
  O(what changed since the previous snapshot), not O(history): `OrderHistory.take_changes()`
  copies the rows of the records added or changed and lists the fills appended since then
  (the history marks them as it applies events). In a thread, the writer brings its own
  copy of the history at the previous snapshot (`HistoryCheckpointState`, immutable rows,
  first taken in `start`) forward with those changes — now the history at S, exactly — and
  writes the checkpoint `history-<S>.bin` (temp file, fsync, rename, directory fsync) from
  it, after the inner sink (the outbox journal) is durable to S and BEFORE the engine
  snapshot file: a snapshot at S exists only if its checkpoint does. Checkpoints older
  than the oldest kept snapshot are removed. No fsync on the submit path: only snapshots
  write.
  Changes are applied in seq order: they are queued in the capture step, and the writers
  run one at a time in that order (an asyncio lock taken in the capture step, FIFO; a
  thread lock for a cancelled snapshot's thread still running); a writer applies every
  queued change up to its own seq. If applying fails, the copy is dropped and the next
  snapshot copies the whole history in its step (`OrderHistory.capture()`, the only
  O(history) step, also taken once in `start`).
  Why not an incremental file (base + deltas): restore would merge and files would need
  compaction; the writer's thread time stays O(history) (pickling), but that is off the
  loop. Why not copy-on-write per account: a busy account (a market maker with 10,000
  records) is dirty in every snapshot, so its copy would stay O(window) in the loop.
- `start(S)` restores the checkpoint at the recovered snapshot's seq S (nothing when S = 0:
  the replay from seq 1 rebuilds everything). A snapshot without a readable checkpoint (one
  written before checkpoints existed) seeds open orders from the engine instead, and says so.
- It also tracks `last_event_engine_seq`: the newest applied command that produced events
  (the ledger learns engine seqs from events only; GetEngineBalances reports it so
  reconciliation knows which seq a caught-up ledger has seen). Kept in the checkpoint.

Checkpoint file: `EXHIST02` · seq u64 · last_event_engine_seq u64 · crc32 u32 (of the
payload) · payload = pickles one after another, each `(part, account_id, rows)` with at most
`CHECKPOINT_CHUNK_ROWS` rows: part "orders" (rows in `OrderRecord.__slots__` order, oldest
first), "client_order_ids" ((client order id, order id) pairs) or "fills" (a fill as its
constructor's arguments); an account with no rows in a part has one empty chunk. Chunks,
because one `pickle.dumps` of the whole history holds the GIL from start to end (~0.3 s
for 200,000 records: a stall of the event loop as long as the copy it replaced); between
chunks the writer thread gives the GIL back. `EXHIST01` files (one pickle of the three
mappings) are still read. It is the shard's own file, trusted like the WAL. Content is a
deterministic function of the WAL prefix up to S; a fenced older owner writing one at S
writes the same content.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import re
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

from core.contracts.orders import FillRecord
from core.engine import ApplyResult, Command, Engine
from core.sequencer import EventSink, EventSinkStart
from core.service.errors import LOGGER
from core.service.order_history import (
    HistoryCapture,
    HistoryChanges,
    HistoryCheckpointState,
    OrderHistory,
)
from core.wal.durable_files import write_file_atomically

CHECKPOINT_MAGIC: Final = b"EXHIST02"
CHECKPOINT_MAGIC_UNCHUNKED: Final = b"EXHIST01"  # read only
CHECKPOINT_CHUNK_ROWS: Final = 512
_ORDERS: Final = "orders"
_CLIENT_ORDER_IDS: Final = "client_order_ids"
_FILLS: Final = "fills"
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
    pieces: list[bytes] = []
    dumps = pickle.dumps
    protocol = pickle.HIGHEST_PROTOCOL
    parts: tuple[tuple[str, dict[str, Any], Callable[[Any], Any] | None], ...] = (
        (_ORDERS, capture.orders, None),
        (_CLIENT_ORDER_IDS, capture.client_order_ids, None),
        (_FILLS, capture.fills, _fill_fields),
    )
    for part, mapping, convert in parts:
        for account_id, values in mapping.items():
            rows = list(values.items()) if isinstance(values, dict) else values
            for start in range(0, max(len(rows), 1), CHECKPOINT_CHUNK_ROWS):
                chunk = rows[start : start + CHECKPOINT_CHUNK_ROWS]
                if convert is not None:
                    chunk = list(map(convert, chunk))
                pieces.append(dumps((part, account_id, chunk), protocol=protocol))
    payload = b"".join(pieces)
    header = _HEADER.pack(CHECKPOINT_MAGIC, engine_seq, last_event_engine_seq, zlib.crc32(payload))
    return header + payload


def _read_header(data: bytes, engine_seq: int) -> int:
    """The checkpoint's last_event_engine_seq, after checking magic and seq."""
    if len(data) < _HEADER.size:
        raise HistoryCheckpointError(f"checkpoint at seq {engine_seq} is truncated")
    magic, seq, last_event_engine_seq, _ = _HEADER.unpack_from(data)
    if magic not in {CHECKPOINT_MAGIC, CHECKPOINT_MAGIC_UNCHUNKED} or seq != engine_seq:
        raise HistoryCheckpointError(f"checkpoint at seq {engine_seq} has a wrong header")
    return int(last_event_engine_seq)


def decode_checkpoint(data: bytes, engine_seq: int) -> tuple[int, HistoryCapture]:
    """(last_event_engine_seq, capture) of a checkpoint file's bytes at `engine_seq`."""
    last_event_engine_seq = _read_header(data, engine_seq)
    crc = _HEADER.unpack_from(data)[3]
    payload = data[_HEADER.size :]
    if zlib.crc32(payload) != crc:
        raise HistoryCheckpointError(f"checkpoint at seq {engine_seq} fails its checksum")
    if data.startswith(CHECKPOINT_MAGIC_UNCHUNKED):
        orders, client_order_ids, fill_rows = pickle.loads(payload)  # noqa: S301  (own file)
    else:
        orders, client_order_ids, fill_rows = {}, {}, {}
        parts = {_ORDERS: orders, _CLIENT_ORDER_IDS: client_order_ids, _FILLS: fill_rows}
        stream = io.BytesIO(payload)
        while stream.tell() < len(payload):
            part, account_id, chunk = pickle.load(stream)  # noqa: S301  (own file)
            if part == _CLIENT_ORDER_IDS:
                client_order_ids.setdefault(account_id, {}).update(chunk)
            else:
                parts[part].setdefault(account_id, []).extend(chunk)
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
        # The writer's copy of the history at `_state_seq` (None: to be copied whole at the
        # next snapshot), the changes queued for it in seq order, and the locks that keep
        # one writer at a time, in seq order.
        self._state: HistoryCheckpointState | None = None
        self._state_seq = 0
        self._queued: deque[tuple[int, HistoryChanges | HistoryCapture]] = deque()
        self._writer_turn = asyncio.Lock()
        self._state_lock = threading.Lock()

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
        self._restore(start)
        # The writer's first state: the history at the snapshot seq (once, before serving).
        self._queued.clear()
        self._state_seq = start.snapshot_seq
        self._state = self._new_state(self._capture_whole())

    def _capture_whole(self) -> HistoryCapture:
        capture = self.history.capture()
        self.history.drop_changes()
        return capture

    def _new_state(self, capture: HistoryCapture) -> HistoryCheckpointState:
        return HistoryCheckpointState(
            capture,
            orders_max_per_account=self.history.orders_max_per_account,
            fills_max_per_account=self.history.fills_max_per_account,
        )

    def _restore(self, start: EventSinkStart) -> None:
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
        if self._state is None:
            self._queued.append((engine_seq, self._capture_whole()))
        else:
            self._queued.append((engine_seq, self.history.take_changes()))
        last_event_engine_seq = self.last_event_engine_seq
        directory = self._directory
        async with self._writer_turn:  # taken in this step when free; FIFO otherwise
            if self._inner is not None:
                await self._inner.wait_durable(engine_seq)
            written = await asyncio.to_thread(
                self._write_checkpoint, directory, engine_seq, last_event_engine_seq
            )
        if not written:
            raise RuntimeError(f"the history checkpoint writer went past seq {engine_seq}")

    def _write_checkpoint(
        self, directory: Path, engine_seq: int, last_event_engine_seq: int
    ) -> bool:
        """In a thread: bring the writer's state to engine_seq and write its checkpoint.
        False if the state is already past engine_seq (only when this snapshot was
        cancelled and a later one's writer ran first)."""
        with self._state_lock:
            if self._state_seq > engine_seq:
                return False
            while self._queued and self._queued[0][0] <= engine_seq:
                seq, change = self._queued.popleft()
                if isinstance(change, HistoryCapture):
                    self._state = self._new_state(change)
                elif self._state is not None:
                    try:
                        self._state.apply(change)
                    except BaseException:
                        self._state = None  # the next snapshot copies the whole history
                        raise
                self._state_seq = seq
            if self._state is None:
                raise HistoryCheckpointError(
                    f"no history state at seq {engine_seq}: the next snapshot copies it whole"
                )
            capture = self._state.capture()
        data = encode_checkpoint(engine_seq, last_event_engine_seq, capture)
        _write_and_prune(directory, engine_seq, data)
        return True
