"""The outbox journal: the trading core's events, durable on disk, in engine order.

It is the sequencer's event sink (core.sequencer.EventSink). One journal record per applied
command, with seq = the command's engine_seq, holding that command's envelopes
(core/outbox/journal_format.py) in a core.wal WriteAheadLog of its own, in
`<shard directory>/outbox/`, written under the shard's epoch fence.

Invariants (a breach raises `OutboxInvariantError`, `OutboxRecoveryError`):
1. Journal seq == engine_seq; records are contiguous and in engine order.
2. The hot path never waits: `applied` only appends references to an in-memory buffer
   (the commands and their results, which are immutable); converting them to envelopes,
   writing and fsyncing happen in one writer thread, in groups. A broker never enters here.
3. `durable_seq` only grows and every seq <= it is fsynced. `wait_durable(S)` (the
   sequencer's barrier before a snapshot at S) returns only once durable_seq >= S, so the
   journal always reaches the snapshot recovery starts from: recovery replays the WAL from
   snapshot + 1 and the journal takes every replayed command beyond its durable end
   (events are a deterministic function of the WAL, so they are identical).
4. At start, the journal's last seq J must satisfy snapshot_seq <= J <= the WAL's last seq;
   otherwise it lost events or is ahead of the log (`OutboxRecoveryError`). An empty journal
   starts at snapshot_seq + 1 (a shard that ran without an outbox publishes from there).
5. After a failure (write/fsync error, fencing, buffer overload) the journal accepts nothing
   more and `wait_durable` raises, so no snapshot passes the failure point: a restart
   regenerates everything that was not durable. Nothing is lost; the shard must restart.
6. Limits: buffered commands <= `buffered_commands_max` (else invariant 5); the in-memory
   tail handed to the publisher <= `memory_tail_bytes_max` (older records are read back
   from the files instead); disk use is bounded only by the disk and by retention
   (segments wholly before the durable publish cursor are removed by the publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from core.contracts.event_wire import EnvelopeSerializer
from core.contracts.events import market_specs_of
from core.engine import ApplyResult, Command, Engine, MarketSpec
from core.outbox.errors import (
    OutboxError,
    OutboxInvariantError,
    OutboxJournalFailedError,
    OutboxNotStartedError,
    OutboxOverloadedError,
    OutboxRecoveryError,
)
from core.outbox.journal_format import encode_serialized_events
from core.sequencer import EventSinkStart
from core.wal import EpochFence, FencedError, TailCut, WalOptions, WalRecord, WriteAheadLog
from core.wal.durable_files import FILE_MODE, fsync_directory
from core.wal.record_format import RECORD_HEADER_BYTES, parse_segment_name, segment_name

MIB: Final = 1024 * 1024
JOURNAL_DIRECTORY_NAME: Final = "outbox"


def _journal_wal_options() -> WalOptions:
    # Smaller segments than the command WAL: retention frees space sooner, and a reader that
    # starts mid-segment scans at most one segment. Up to 1M segments: bounded by the disk.
    return WalOptions(segment_bytes_max=16 * MIB, segment_count_max=1_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalOptions:
    directory_name: str = JOURNAL_DIRECTORY_NAME  # inside the shard directory
    wal_options: WalOptions = field(default_factory=_journal_wal_options)
    buffered_commands_max: int = 1_000_000  # applied, not yet written (invariant 6)
    group_commands_max: int = 8192  # commands per write + fsync
    memory_tail_bytes_max: int = 64 * MIB  # durable records kept in memory for the publisher

    def __post_init__(self) -> None:
        if not 1 <= self.group_commands_max <= self.wal_options.group_records_max:
            raise ValueError(f"group_commands_max {self.group_commands_max} out of range")
        if self.buffered_commands_max < self.group_commands_max:
            raise ValueError("buffered_commands_max < group_commands_max")
        if self.memory_tail_bytes_max < 0:
            raise ValueError("memory_tail_bytes_max < 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRecovery:
    """What `start` found on disk."""

    first_seq: int  # oldest seq still in the journal
    durable_seq: int  # its last seq: replayed commands beyond it are journaled again
    snapshot_seq: int  # the snapshot the sequencer recovered from
    wal_last_seq: int
    tail_cut: TailCut | None  # a torn journal tail cut by recovery, if any


@dataclass(slots=True)
class _Applied:
    first_seq: int
    commands: Sequence[Command]
    results: Sequence[ApplyResult]


class _CachedMarketSpecs:
    """symbol -> MarketSpec, read from the engine once per symbol (specs never change)."""

    __slots__ = ("_cache", "_lookup")

    def __init__(self, engine: Engine) -> None:
        self._lookup = market_specs_of(engine)
        self._cache: dict[str, MarketSpec] = {}

    def __call__(self, symbol: str) -> MarketSpec | None:
        spec = self._cache.get(symbol)
        if spec is None:
            spec = self._lookup(symbol)
            if spec is not None:
                self._cache[symbol] = spec
        return spec


def _create_first_segment(directory: Path, first_seq: int) -> None:
    fd = os.open(
        directory / segment_name(first_seq),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
        FILE_MODE,
    )
    os.close(fd)
    fsync_directory(directory)


def _has_segments(directory: Path) -> bool:
    return any(parse_segment_name(entry.name) is not None for entry in os.scandir(directory))


class OutboxJournal:
    """The sequencer's event sink: pass it to `Sequencer.open(..., event_sink=journal)`."""

    def __init__(self, *, shard_id: str, options: JournalOptions | None = None) -> None:
        if not shard_id:
            raise ValueError("shard_id must not be empty")
        self.shard_id = shard_id
        self.options = options or JournalOptions()
        self.recovery: JournalRecovery | None = None
        self.directory: Path | None = None  # the journal directory, once started
        self.shard_directory: Path | None = None
        self._epoch = 0
        self._wal: WriteAheadLog | None = None
        self._fence: EpochFence | None = None
        self._serializer: EnvelopeSerializer | None = None  # used by the writer thread only
        self._executor: ThreadPoolExecutor | None = None
        self._buffer: deque[_Applied] = deque()
        self._buffered_commands = 0
        self._accepted_seq = 0  # last seq handed to `applied` (journaled or buffered)
        self._durable_seq = 0
        self._tail: deque[WalRecord] = deque()  # durable records not yet taken by a reader
        self._tail_bytes = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._changed: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------------ EventSink

    def start(self, start: EventSinkStart) -> None:
        """Open (recovering) the journal; called by `Sequencer.open` (invariant 4)."""
        if self._wal is not None:
            raise OutboxInvariantError("journal started twice")
        directory = start.directory / self.options.directory_name
        directory.mkdir(parents=True, exist_ok=True)
        fence = EpochFence(start.directory, start.epoch)
        try:
            if not _has_segments(directory):
                _create_first_segment(directory, start.snapshot_seq + 1)
            wal = WriteAheadLog.open(
                directory, epoch=start.epoch, fence=fence, options=self.options.wal_options
            )
            try:
                self._check_recovered(wal, start)
            except BaseException:
                wal.close()
                raise
        except BaseException:
            fence.close()
            raise
        self.directory = directory
        self.shard_directory = start.directory
        self._epoch = start.epoch
        self._fence = fence
        self._wal = wal
        self._serializer = EnvelopeSerializer(
            shard_id=self.shard_id, epoch=start.epoch, market_spec=_CachedMarketSpecs(start.engine)
        )
        self._accepted_seq = self._durable_seq = wal.last_seq
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-journal")
        self.recovery = JournalRecovery(
            first_seq=wal.first_seq,
            durable_seq=wal.last_seq,
            snapshot_seq=start.snapshot_seq,
            wal_last_seq=start.wal_last_seq,
            tail_cut=wal.recovery.tail_cut,
        )

    @staticmethod
    def _check_recovered(wal: WriteAheadLog, start: EventSinkStart) -> None:
        if wal.last_seq < start.snapshot_seq:
            raise OutboxRecoveryError(
                f"{wal.directory}: the journal ends at seq {wal.last_seq}, before the snapshot "
                f"at {start.snapshot_seq}: events {wal.last_seq + 1}..{start.snapshot_seq} "
                "cannot be regenerated"
            )
        if wal.last_seq > start.wal_last_seq:
            raise OutboxRecoveryError(
                f"{wal.directory}: the journal ends at seq {wal.last_seq}, after the WAL's "
                f"last seq {start.wal_last_seq}"
            )

    def applied(
        self, first_seq: int, commands: Sequence[Command], results: Sequence[ApplyResult]
    ) -> None:
        """Take an applied batch (invariant 2: no I/O, no await)."""
        if self._wal is None:
            raise OutboxNotStartedError("the journal must be started by Sequencer.open first")
        count = len(commands)
        if count != len(results):
            raise OutboxInvariantError(f"{count} commands but {len(results)} results")
        last_seq = first_seq + count - 1
        if last_seq <= self._accepted_seq:
            return  # replayed by recovery, already in the journal
        if first_seq <= self._accepted_seq:
            skip = self._accepted_seq + 1 - first_seq
            first_seq, commands, results = first_seq + skip, commands[skip:], results[skip:]
            count -= skip
        if first_seq != self._accepted_seq + 1:
            raise OutboxInvariantError(
                f"batch starts at seq {first_seq}, expected {self._accepted_seq + 1}"
            )
        self._accepted_seq = last_seq
        if self._failure is not None or self._closed:
            return  # invariant 5: dropped; snapshots are refused, a restart regenerates them
        self._buffer.append(_Applied(first_seq, commands, results))
        self._buffered_commands += count
        if self._buffered_commands > self.options.buffered_commands_max:
            self._fail(
                OutboxOverloadedError(
                    f"{self._buffered_commands} commands wait for the journal "
                    f"> buffered_commands_max {self.options.buffered_commands_max}"
                )
            )
            return
        self._kick()

    async def wait_durable(self, engine_seq: int) -> None:
        """Return once every seq <= engine_seq is durable in the journal (invariant 3).

        Raises `OutboxJournalFailedError` (or `FencedError`) if the journal failed first.
        """
        if engine_seq <= self._durable_seq:
            return
        self._raise_if_failed()
        if engine_seq > self._accepted_seq:
            raise OutboxInvariantError(
                f"wait for seq {engine_seq}, but only {self._accepted_seq} was handed in"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((engine_seq, future))
        self._kick()
        await future

    # ------------------------------------------------------------------ state

    @property
    def started(self) -> bool:
        return self._wal is not None

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def accepted_seq(self) -> int:
        """The last engine_seq handed to the journal (journaled, buffered or dropped)."""
        return self._accepted_seq

    @property
    def durable_seq(self) -> int:
        """The last engine_seq whose events are fsynced in the journal (its end)."""
        return self._durable_seq

    @property
    def first_seq(self) -> int:
        """The oldest seq still on disk (older segments were removed once published)."""
        return self._require_wal().first_seq

    @property
    def segment_count(self) -> int:
        return self._require_wal().segment_count

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def _require_wal(self) -> WriteAheadLog:
        if self._wal is None:
            raise OutboxNotStartedError("the journal must be started by Sequencer.open first")
        return self._wal

    def _raise_if_failed(self) -> None:
        failure = self._failure
        if failure is None:
            return
        if isinstance(failure, FencedError):
            raise FencedError(f"outbox journal fenced: {failure}") from failure
        if isinstance(failure, OutboxJournalFailedError):
            raise type(failure)(*failure.args) from failure
        raise OutboxJournalFailedError(f"outbox journal failed: {failure!r}") from failure

    # ------------------------------------------------------------------ writing

    def _kick(self) -> None:
        if self._flusher is not None or not self._buffer or self._failure is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # recovery inside a synchronous Sequencer.open: written once a loop runs
        self._flusher = loop.create_task(self._flush_loop())

    def _take_group(self) -> list[_Applied]:
        group: list[_Applied] = []
        count = 0
        while self._buffer:
            head = self._buffer[0]
            if group and count + len(head.commands) > self.options.group_commands_max:
                break
            group.append(self._buffer.popleft())
            count += len(head.commands)
        return group

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._buffer and self._failure is None:
                group = self._take_group()
                executor = self._executor
                if executor is None:
                    raise OutboxInvariantError("journal writer missing")
                try:
                    records = await loop.run_in_executor(executor, self._write_group, group)
                except Exception as error:  # noqa: BLE001  (kept as the failure, invariant 5)
                    self._fail(error)
                    return
                self._buffered_commands = max(0, self._buffered_commands - len(records))
                self._made_durable(records)
        finally:
            self._flusher = None

    def _write_group(self, group: list[_Applied]) -> list[WalRecord]:
        """Writer thread: convert, append (in WAL-sized chunks), fsync once."""
        wal = self._require_wal()
        serializer = self._serializer
        if serializer is None:
            raise OutboxInvariantError("journal serializer missing")
        payloads: list[bytes] = []
        for applied in group:
            for command, result in zip(applied.commands, applied.results, strict=True):
                events = result.events
                payloads.append(
                    encode_serialized_events(events, serializer(events, command=command))
                )
        expected_seq = group[0].first_seq
        if wal.next_seq != expected_seq:
            raise OutboxInvariantError(f"journal at seq {wal.next_seq}, group at {expected_seq}")
        bytes_max = wal.options.group_bytes_max
        chunk: list[bytes] = []
        chunk_bytes = 0
        for payload in payloads:
            record_bytes = RECORD_HEADER_BYTES + len(payload)
            if chunk and chunk_bytes + record_bytes > bytes_max:
                wal.append(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(payload)
            chunk_bytes += record_bytes
        if chunk:
            wal.append(chunk)
        wal.sync()
        epoch = self._epoch
        return [
            WalRecord(expected_seq + offset, epoch, payload)
            for offset, payload in enumerate(payloads)
        ]

    def _made_durable(self, records: list[WalRecord]) -> None:
        self._durable_seq = records[-1].seq
        tail = self._tail
        tail.extend(records)
        self._tail_bytes += sum(len(record.payload) for record in records)
        while self._tail_bytes > self.options.memory_tail_bytes_max and tail:
            self._tail_bytes -= len(tail.popleft().payload)
        self._resolve_waiters()
        if self._changed is not None:
            self._changed.set()

    def _resolve_waiters(self) -> None:
        still_waiting: list[tuple[int, asyncio.Future[None]]] = []
        for seq, future in self._waiters:
            if future.done():
                continue
            if seq <= self._durable_seq:
                future.set_result(None)
            elif self._failure is not None:
                try:
                    self._raise_if_failed()
                except OutboxError as error:
                    future.set_exception(error)
                except FencedError as error:
                    future.set_exception(error)
            else:
                still_waiting.append((seq, future))
        self._waiters = still_waiting

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._buffer.clear()
        self._buffered_commands = 0
        self._resolve_waiters()
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ reading: the publisher

    async def wait_changed(self) -> None:
        """Wait until durable_seq moves (or the journal fails or closes)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        await self._changed.wait()

    def reader(self, next_seq: int) -> JournalReader:
        """The publisher's reader, from `next_seq` on (one reader per journal)."""
        self._require_wal()
        return JournalReader(self, next_seq)

    def _take_from_memory(self, next_seq: int, records_max: int, bytes_max: int) -> list[WalRecord]:
        tail = self._tail
        while tail and tail[0].seq < next_seq:  # the single reader is past them
            self._tail_bytes -= len(tail.popleft().payload)
        records: list[WalRecord] = []
        taken_bytes = 0
        while tail and tail[0].seq == next_seq and len(records) < records_max:
            if records and taken_bytes + len(tail[0].payload) > bytes_max:
                break
            record = tail.popleft()
            self._tail_bytes -= len(record.payload)
            records.append(record)
            taken_bytes += len(record.payload)
            next_seq += 1
        return records

    def remove_published_before(self, seq: int) -> int:
        """Delete journal segments wholly before `seq` (blocking: call it in a thread)."""
        return self._require_wal().remove_segments_before(min(seq, self._durable_seq + 1))

    # ------------------------------------------------------------------ close

    async def flush(self) -> None:
        """Wait until everything handed in is durable (raises if the journal failed)."""
        await self.wait_durable(self._accepted_seq)

    async def aclose(self) -> None:
        """Write what is buffered, then close (after the sequencer, before nothing else)."""
        if self._closed:
            return
        if self._wal is not None and self._failure is None:
            # A failure is kept in `failure`; a restart regenerates what was not written.
            with contextlib.suppress(OutboxError, FencedError):
                await self.flush()
        self.close()

    def close(self) -> None:
        """Close without writing what is buffered (a restart regenerates it)."""
        if self._closed:
            return
        self._closed = True
        self._fail(OutboxJournalFailedError("journal closed"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._wal is not None:
            self._wal.close()
        if self._fence is not None:
            self._fence.close()


class JournalReader:
    """Reads durable journal records in seq order: from memory while the publisher keeps up,
    from the segment files (in a thread) when it fell behind (restart, broker outage)."""

    def __init__(self, journal: OutboxJournal, next_seq: int) -> None:
        self._journal = journal
        self.next_seq = next_seq
        self._iterator: Iterator[WalRecord] | None = None
        self._iterator_next_seq = 0
        self._peeked: WalRecord | None = None
        self.file_records_count = 0

    async def take(self, records_max: int, bytes_max: int) -> list[WalRecord]:
        """Up to `records_max` records (and about `bytes_max` payload bytes, at least one
        record) from next_seq on, durable ones only; [] when there is none yet."""
        journal = self._journal
        if self.next_seq > journal.durable_seq:
            return []
        records = journal._take_from_memory(self.next_seq, records_max, bytes_max)
        if not records:
            memory_first = journal._tail[0].seq if journal._tail else None
            last_seq = journal.durable_seq if memory_first is None else memory_first - 1
            records = await asyncio.to_thread(
                self._read_files, self.next_seq, last_seq, records_max, bytes_max
            )
            self.file_records_count += len(records)
        self.next_seq += len(records)
        return records

    def _read_files(
        self, next_seq: int, last_seq: int, records_max: int, bytes_max: int
    ) -> list[WalRecord]:
        if self._iterator is None or next_seq != self._iterator_next_seq:
            self._iterator = self._journal._require_wal().replay(next_seq)
            self._peeked = None
        records: list[WalRecord] = []
        taken_bytes = 0
        while len(records) < records_max:
            record = self._peeked if self._peeked is not None else next(self._iterator, None)
            self._peeked = None
            if record is None:  # the iterator ends at the last seq it saw when created
                self._iterator = None
                break
            if record.seq > last_seq or (records and taken_bytes + len(record.payload) > bytes_max):
                self._peeked = record
                break
            if record.seq != next_seq + len(records):
                raise OutboxInvariantError(f"journal replay gave seq {record.seq}")
            records.append(record)
            taken_bytes += len(record.payload)
        self._iterator_next_seq = next_seq + len(records)
        return records
