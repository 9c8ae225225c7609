"""Write-ahead log: segmented, CRC-checked, fsync-acknowledged, with asyncio group commit.

Invariants (the code raises when one would break; tests cover each):
1. Seqs are assigned by the log, strictly increasing by 1 from the first segment's first seq;
   no gap, no reuse, across segments and across reopen.
2. A record counts as durable (`durable_seq`, a resolved `append_durable`) only after fsync of
   its segment file; a new segment file is created only after the previous segment was fsynced
   and is itself made durable by an fsync of the directory. Hence every segment except the
   last is complete on disk, and a bad record there is corruption, never a torn write.
3. Recovery at open: every segment is validated in order. The first bad record of the LAST
   segment is a torn tail and is cut (the cut bytes are kept aside in a `.cut-<offset>` file
   and the cut is reported in `recovery.tail_cut`); a bad record anywhere else raises
   `WalCorruptionError`. What recovery keeps is fsynced before the first new append.
4. Every write happens under the epoch fence's shared lock, after checking that no newer
   epoch exists (`core.wal.fencing`); a fenced or failed log refuses every later append until
   it is reopened (after a failed write or fsync the file state is unknown).
5. Group commit: a caller's future resolves only after the fsync that covers ALL of its
   records; records of one `append_durable` call are contiguous and never split across groups.
6. Limits: payload <= `record_bytes_max`; segment file <= `segment_bytes_max`; a group holds
   <= `group_records_max` records and <= `group_bytes_max` bytes; the queue of waiting appends
   <= `pending_records_max` / `pending_bytes_max`; <= `segment_count_max` segment files.

Threading: file state is mutated only under `_state_lock`; the asyncio path runs its writes in
one dedicated writer thread so the event loop never blocks on write or fsync.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from core.wal.durable_files import FILE_MODE, fsync_directory, write_all
from core.wal.errors import (
    FencedError,
    RecordTooLargeError,
    WalClosedError,
    WalCorruptionError,
    WalError,
    WalFailedError,
    WalLimitError,
    WalOverloadedError,
    WalSeqUnavailableError,
)
from core.wal.fencing import EpochFence
from core.wal.record_format import (
    EPOCH_MAX,
    RECORD_HEADER_BYTES,
    RECORD_PAYLOAD_BYTES_FORMAT_MAX,
    SEQ_MAX,
    BadRecordReason,
    SegmentPosition,
    SegmentReader,
    WalRecord,
    encode_record,
    parse_segment_name,
    segment_name,
)

MIB: Final = 1024 * 1024
FIRST_SEQ: Final = 1
CUT_TAIL_COPY_CHUNK_BYTES: Final = MIB

Fsync = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class WalOptions:
    """Limits of one log (invariant 6). Validated on construction."""

    segment_bytes_max: int = 64 * MIB
    record_bytes_max: int = 4 * MIB  # payload bytes of one record
    group_records_max: int = 8192
    group_bytes_max: int = 16 * MIB  # header + payload bytes written by one group commit
    pending_records_max: int = 262_144
    pending_bytes_max: int = 256 * MIB
    segment_count_max: int = 100_000
    preserve_cut_tail: bool = True  # keep bytes cut by recovery in a `.cut-<offset>` file

    def __post_init__(self) -> None:
        record_max_bytes = RECORD_HEADER_BYTES + self.record_bytes_max
        checks = (
            (1 <= self.record_bytes_max <= RECORD_PAYLOAD_BYTES_FORMAT_MAX, "record_bytes_max"),
            (self.segment_bytes_max >= record_max_bytes, "segment_bytes_max >= a full record"),
            (self.group_bytes_max >= record_max_bytes, "group_bytes_max >= a full record"),
            (self.group_records_max >= 1, "group_records_max >= 1"),
            (self.pending_records_max >= self.group_records_max, "pending_records_max"),
            (self.pending_bytes_max >= self.group_bytes_max, "pending_bytes_max"),
            (self.segment_count_max >= 2, "segment_count_max >= 2"),
        )
        for passed, rule in checks:
            if not passed:
                raise ValueError(f"invalid WalOptions: {rule} ({self})")


@dataclass(frozen=True, slots=True, kw_only=True)
class TailCut:
    """What recovery cut from the end of the last segment, and why."""

    segment_path: Path
    offset_bytes: int  # the segment now ends here
    bytes_cut: int
    reason: BadRecordReason
    preserved_path: Path | None  # copy of the cut bytes, if preserve_cut_tail


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    segments_scanned: int
    records_recovered: int
    first_seq: int
    last_seq: int  # first_seq - 1 when the log is empty
    last_epoch: int  # 0 when the log is empty
    tail_cut: TailCut | None


@dataclass(slots=True)
class _PendingAppend:
    payloads: list[bytes]
    record_bytes: int
    future: asyncio.Future[list[int]] = field(repr=False)


def _list_segments(directory: Path, segment_count_max: int) -> list[int]:
    first_seqs: list[int] = []
    for entry in os.scandir(directory):
        first_seq = parse_segment_name(entry.name)
        if first_seq is None:
            continue
        first_seqs.append(first_seq)
        if len(first_seqs) > segment_count_max:
            raise WalLimitError(f"{directory}: more than {segment_count_max} segment files")
    first_seqs.sort()
    return first_seqs


def _copy_tail(source: Path, offset_bytes: int, target: Path, fsync: Fsync) -> None:
    source_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            position = offset_bytes
            while chunk := os.pread(source_fd, CUT_TAIL_COPY_CHUNK_BYTES, position):
                write_all(target_fd, chunk)
                position += len(chunk)
            fsync(target_fd)
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


class WriteAheadLog:
    """One shard's write-ahead log in one directory. Create with `WriteAheadLog.open`."""

    def __init__(
        self,
        directory: Path,
        *,
        epoch: int,
        fence: EpochFence | None,
        options: WalOptions,
        fsync: Fsync,
        segments: list[int],
        active_fd: int,
        active_bytes: int,
        next_seq: int,
        recovery: RecoveryReport,
    ) -> None:
        self.directory = directory
        self.epoch = epoch
        self.fence = fence
        self.options = options
        self.recovery = recovery
        self._fsync_function = fsync
        self._segments = segments  # first seq of each segment file, ascending
        self._active_fd: int | None = active_fd
        self._active_bytes = active_bytes
        self._next_seq = next_seq
        self._durable_seq = next_seq - 1
        self._state_lock = threading.Lock()
        self._refusal: BaseException | None = None
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[_PendingAppend] = deque()
        self._pending_records = 0
        self._pending_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self.fsync_count = 0  # fsyncs of segment files (each covers >= 1 record)
        self.directory_fsync_count = 0
        self.group_commit_count = 0
        self.records_appended_count = 0

    # ------------------------------------------------------------------ open / recovery

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        epoch: int,
        fence: EpochFence | None = None,
        options: WalOptions | None = None,
        fsync: Fsync = os.fsync,
    ) -> WriteAheadLog:
        """Open (creating if needed) and recover the log in `directory` for writer `epoch`.

        Raises `WalCorruptionError` for damage outside the last segment's tail and
        `FencedError` if a newer epoch owns the fence or already wrote to the log.
        """
        options = options or WalOptions()
        if not 0 <= epoch <= EPOCH_MAX:
            raise ValueError(f"epoch {epoch} out of range")
        if fence is not None:
            if fence.epoch != epoch:
                raise ValueError(f"fence epoch {fence.epoch} != writer epoch {epoch}")
            fence.check()
        directory.mkdir(parents=True, exist_ok=True)
        segments = _list_segments(directory, options.segment_count_max)
        if not segments:
            fd = cls._create_segment_file(directory, FIRST_SEQ, fsync)
            report = RecoveryReport(
                segments_scanned=0,
                records_recovered=0,
                first_seq=FIRST_SEQ,
                last_seq=FIRST_SEQ - 1,
                last_epoch=0,
                tail_cut=None,
            )
            return cls(
                directory,
                epoch=epoch,
                fence=fence,
                options=options,
                fsync=fsync,
                segments=[FIRST_SEQ],
                active_fd=fd,
                active_bytes=0,
                next_seq=FIRST_SEQ,
                recovery=report,
            )
        report, active_bytes = cls._recover(directory, segments, options, fsync)
        if report.last_epoch > epoch:
            raise FencedError(
                f"{directory}: the log already holds records of epoch {report.last_epoch}, "
                f"newer than this writer's epoch {epoch}"
            )
        active_path = directory / segment_name(segments[-1])
        active_fd = os.open(active_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            fsync(active_fd)  # invariant 3: what recovery keeps is durable before new appends
        except BaseException:
            os.close(active_fd)
            raise
        return cls(
            directory,
            epoch=epoch,
            fence=fence,
            options=options,
            fsync=fsync,
            segments=segments,
            active_fd=active_fd,
            active_bytes=active_bytes,
            next_seq=report.last_seq + 1,
            recovery=report,
        )

    @staticmethod
    def _create_segment_file(directory: Path, first_seq: int, fsync: Fsync) -> int:
        path = directory / segment_name(first_seq)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE
        )
        try:
            fsync_directory(directory, fsync=fsync)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _recover(
        directory: Path, segments: list[int], options: WalOptions, fsync: Fsync
    ) -> tuple[RecoveryReport, int]:
        expected_seq = segments[0]
        epoch_floor = 0
        records_recovered = 0
        tail_cut: TailCut | None = None
        active_bytes = 0
        for index, first_seq in enumerate(segments):
            path = directory / segment_name(first_seq)
            is_last = index == len(segments) - 1
            if first_seq != expected_seq:
                raise WalCorruptionError(
                    f"{path}: segment starts at seq {first_seq}, expected {expected_seq} "
                    "(a segment is missing or incomplete)"
                )
            reader = SegmentReader(path, first_seq=first_seq, epoch_floor=epoch_floor)
            for _record in reader.records():
                records_recovered += 1
            end = reader.end
            if end is None:
                raise WalCorruptionError(f"{path}: segment reader did not finish")
            if end.bad_record is not None:
                if not is_last:
                    raise WalCorruptionError(
                        f"{path}: {end.bad_record.reason.value} at offset "
                        f"{end.bad_record.offset_bytes} in a non-last segment"
                    )
                tail_cut = WriteAheadLog._cut_tail(
                    path,
                    offset_bytes=end.good_bytes,
                    file_bytes=end.file_bytes,
                    reason=end.bad_record.reason,
                    options=options,
                    fsync=fsync,
                )
            expected_seq = end.next_seq
            epoch_floor = end.last_epoch
            active_bytes = end.good_bytes
        report = RecoveryReport(
            segments_scanned=len(segments),
            records_recovered=records_recovered,
            first_seq=segments[0],
            last_seq=expected_seq - 1,
            last_epoch=epoch_floor,
            tail_cut=tail_cut,
        )
        return report, active_bytes

    @staticmethod
    def _cut_tail(
        path: Path,
        *,
        offset_bytes: int,
        file_bytes: int,
        reason: BadRecordReason,
        options: WalOptions,
        fsync: Fsync,
    ) -> TailCut:
        preserved_path: Path | None = None
        if options.preserve_cut_tail:
            preserved_path = path.with_name(f"{path.name}.cut-{offset_bytes:020d}")
            _copy_tail(path, offset_bytes, preserved_path, fsync)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, offset_bytes)
            fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(path.parent, fsync=fsync)
        return TailCut(
            segment_path=path,
            offset_bytes=offset_bytes,
            bytes_cut=file_bytes - offset_bytes,
            reason=reason,
            preserved_path=preserved_path,
        )

    # ------------------------------------------------------------------ state

    @property
    def first_seq(self) -> int:
        """The oldest seq still in the log (segments before it were removed)."""
        return self._segments[0]

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def last_seq(self) -> int:
        """The last seq written (durable or not); first_seq - 1 if the log is empty."""
        return self._next_seq - 1

    @property
    def durable_seq(self) -> int:
        """The last seq known to be fsynced; every seq <= it survives a crash."""
        return self._durable_seq

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def _raise_if_refusing(self) -> None:
        if self._closed:
            raise WalClosedError(f"{self.directory}: log closed")
        refusal = self._refusal
        if refusal is None:
            return
        if isinstance(refusal, FencedError):
            raise FencedError(f"appends refused, this writer was fenced: {refusal}") from refusal
        raise WalFailedError(
            f"appends refused after a failed write or fsync ({refusal!r}); reopen the log"
        ) from refusal

    def _refuse(self, error: BaseException) -> None:
        if self._refusal is None:
            self._refusal = error

    def _fence_guard(self) -> AbstractContextManager[None]:
        return nullcontext() if self.fence is None else self.fence.guard()

    # ------------------------------------------------------------------ writing, lock held

    def _validated(self, payloads: Sequence[bytes]) -> tuple[list[bytes], int]:
        payload_list = list(payloads)
        record_bytes = 0
        for payload in payload_list:
            if not isinstance(payload, bytes):
                raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
            if len(payload) > self.options.record_bytes_max:
                raise RecordTooLargeError(
                    f"payload of {len(payload)} bytes > record_bytes_max "
                    f"{self.options.record_bytes_max}"
                )
            record_bytes += RECORD_HEADER_BYTES + len(payload)
        if len(payload_list) > self.options.group_records_max:
            raise WalLimitError(
                f"{len(payload_list)} records in one call > group_records_max "
                f"{self.options.group_records_max}"
            )
        if record_bytes > self.options.group_bytes_max:
            raise WalLimitError(
                f"{record_bytes} bytes in one call > group_bytes_max {self.options.group_bytes_max}"
            )
        return payload_list, record_bytes

    def _check_room_locked(self, record_count: int, record_bytes: int) -> None:
        """Refuse, before writing anything, a write that could break a seq or segment limit."""
        if self._next_seq + record_count - 1 > SEQ_MAX:
            raise WalLimitError("seq space exhausted")
        room_per_segment = max(
            1, self.options.segment_bytes_max - RECORD_HEADER_BYTES - self.options.record_bytes_max
        )
        rolls_max = min(record_count, record_bytes // room_per_segment + 1)
        if len(self._segments) + rolls_max > self.options.segment_count_max:
            raise WalLimitError(
                f"{len(self._segments)} segments: writing could exceed segment_count_max "
                f"{self.options.segment_count_max}; remove old segments after a snapshot"
            )

    def _write_locked(self, payload_lists: list[list[bytes]]) -> list[list[int]]:
        """Encode, assign seqs and write (rolling segments); no final fsync."""
        seq = self._next_seq
        chunk = bytearray()
        seq_lists: list[list[int]] = []
        for payloads in payload_lists:
            seqs: list[int] = []
            for payload in payloads:
                record = encode_record(seq, self.epoch, payload)
                segment_bytes = self._active_bytes + len(chunk)
                if segment_bytes > 0 and segment_bytes + len(record) > (
                    self.options.segment_bytes_max
                ):
                    self._write_chunk_locked(chunk, next_seq=seq)
                    chunk = bytearray()
                    self._roll_locked(first_seq=seq)
                chunk += record
                seqs.append(seq)
                seq += 1
            seq_lists.append(seqs)
        if chunk:
            self._write_chunk_locked(chunk, next_seq=seq)
        return seq_lists

    def _write_chunk_locked(self, chunk: bytearray, *, next_seq: int) -> None:
        active_fd = self._active_fd
        if active_fd is None:
            raise WalClosedError(f"{self.directory}: no active segment")
        write_all(active_fd, chunk)
        self._active_bytes += len(chunk)
        self.records_appended_count += next_seq - self._next_seq
        self._next_seq = next_seq

    def _roll_locked(self, *, first_seq: int) -> None:
        self._sync_locked()  # invariant 2: the old segment is complete before the new exists
        active_fd = self._active_fd
        if active_fd is not None:
            self._active_fd = None
            os.close(active_fd)
        self._active_fd = self._create_segment_file(self.directory, first_seq, self._fsync_function)
        self.directory_fsync_count += 1
        self._segments.append(first_seq)
        self._active_bytes = 0

    def _sync_locked(self) -> None:
        active_fd = self._active_fd
        if active_fd is None:
            raise WalClosedError(f"{self.directory}: no active segment")
        last_written_seq = self._next_seq - 1
        if last_written_seq == self._durable_seq:
            return
        self._fsync_function(active_fd)
        self.fsync_count += 1
        self._durable_seq = last_written_seq

    def _append_locked(
        self, payload_lists: list[list[bytes]], record_bytes: int, *, sync: bool
    ) -> list[list[int]]:
        self._raise_if_refusing()
        self._check_room_locked(sum(len(payloads) for payloads in payload_lists), record_bytes)
        try:
            with self._fence_guard():
                seq_lists = self._write_locked(payload_lists)
                if sync:
                    self._sync_locked()
        except BaseException as error:
            self._refuse(error)  # invariant 4: the file state is unknown from here on
            raise
        return seq_lists

    # ------------------------------------------------------------------ synchronous API

    def append(self, payloads: Sequence[bytes]) -> list[int]:
        """Write records (not yet durable: call `sync`) and return their seqs."""
        payload_list, record_bytes = self._validated(payloads)
        with self._state_lock:
            (seqs,) = self._append_locked([payload_list], record_bytes, sync=False)
        return seqs

    def sync(self) -> int:
        """fsync what was appended; return `durable_seq`."""
        with self._state_lock:
            self._raise_if_refusing()
            try:
                self._sync_locked()
            except BaseException as error:
                self._refuse(error)
                raise
            return self._durable_seq

    # ------------------------------------------------------------------ group commit

    async def append_durable(self, payloads: Sequence[bytes]) -> list[int]:
        """Append and return the seqs once they are fsynced (batched with concurrent calls).

        If the write or fsync of the group fails, raises (`WalFailedError`, `FencedError`)
        and the records are not acknowledged; if the caller is cancelled, its records may or
        may not become durable.
        """
        self._raise_if_refusing()
        payload_list, record_bytes = self._validated(payloads)
        if not payload_list:
            return []
        if (
            self._pending_records + len(payload_list) > self.options.pending_records_max
            or self._pending_bytes + record_bytes > self.options.pending_bytes_max
        ):
            raise WalOverloadedError(
                f"group-commit queue full: {self._pending_records} records, "
                f"{self._pending_bytes} bytes waiting"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._pending.append(_PendingAppend(payload_list, record_bytes, future))
        self._pending_records += len(payload_list)
        self._pending_bytes += record_bytes
        if self._flusher is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-writer")
            self._flusher = loop.create_task(self._flush_loop(self._executor))
        return await future

    def _take_group(self) -> list[_PendingAppend]:
        group: list[_PendingAppend] = []
        group_records = 0
        group_bytes = 0
        while self._pending:
            head = self._pending[0]
            if group and (
                group_records + len(head.payloads) > self.options.group_records_max
                or group_bytes + head.record_bytes > self.options.group_bytes_max
            ):
                break
            self._pending.popleft()
            group.append(head)
            group_records += len(head.payloads)
            group_bytes += head.record_bytes
        self._pending_records -= group_records
        self._pending_bytes -= group_bytes
        return group

    def _write_group_blocking(
        self, payload_lists: list[list[bytes]], record_bytes: int
    ) -> list[list[int]]:
        with self._state_lock:
            seq_lists = self._append_locked(payload_lists, record_bytes, sync=True)
            self.group_commit_count += 1
            return seq_lists

    async def _flush_loop(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group = self._take_group()
                payload_lists = [pending.payloads for pending in group]
                record_bytes = sum(pending.record_bytes for pending in group)
                try:
                    seq_lists = await loop.run_in_executor(
                        executor, self._write_group_blocking, payload_lists, record_bytes
                    )
                except BaseException as error:
                    self._fail_waiters(group, error)
                    if isinstance(error, WalLimitError):
                        continue  # nothing was written; later groups may still fit
                    self._refuse(error)
                    self._fail_waiters(self._take_all_pending(), error)
                    if not isinstance(error, Exception):
                        raise
                    return
                if len(seq_lists) != len(group):
                    raise WalError("writer returned a seq list per call, count mismatch")
                for pending, seqs in zip(group, seq_lists, strict=True):
                    if not pending.future.done():  # a cancelled caller is skipped
                        pending.future.set_result(seqs)
        finally:
            self._flusher = None

    def _take_all_pending(self) -> list[_PendingAppend]:
        waiters = list(self._pending)
        self._pending.clear()
        self._pending_records = 0
        self._pending_bytes = 0
        return waiters

    @staticmethod
    def _fail_waiters(waiters: list[_PendingAppend], error: BaseException) -> None:
        for pending in waiters:
            if pending.future.done():
                continue
            caller_error: WalError
            if isinstance(error, WalError):
                caller_error = type(error)(*error.args)
            else:
                caller_error = WalFailedError(f"group commit failed, not acknowledged: {error!r}")
            caller_error.__cause__ = error
            pending.future.set_exception(caller_error)

    # ------------------------------------------------------------------ replay / retention

    def replay(self, from_seq: int | None = None) -> Iterator[WalRecord]:
        """Records with seq >= from_seq (default: the first), up to `last_seq` at call time.

        Raises `WalSeqUnavailableError` if from_seq is before the first seq or after
        last_seq + 1, and `WalCorruptionError` if a record that should be there is not valid.
        """
        start_seq = self.first_seq if from_seq is None else from_seq
        return LogReader(self, start_seq).read_through(None)

    def _segments_and_last_seq(self) -> tuple[list[int], int]:
        with self._state_lock:
            return list(self._segments), self._next_seq - 1

    def remove_segments_before(self, seq: int) -> int:
        """Delete whole segments whose records are all < seq (e.g. seq = snapshot seq + 1).

        The active segment is never removed. Returns how many files were deleted.
        """
        with self._state_lock:
            self._raise_if_refusing()
            removable = bisect.bisect_right(self._segments, seq) - 1  # segments[i+1] <= seq
            removable = min(removable, len(self._segments) - 1)
            if removable <= 0:
                return 0
            for first_seq in self._segments[:removable]:
                (self.directory / segment_name(first_seq)).unlink()
            del self._segments[:removable]
            fsync_directory(self.directory, fsync=self._fsync_function)
            self.directory_fsync_count += 1
            return removable

    # ------------------------------------------------------------------ close

    async def aclose(self) -> None:
        """Wait for in-flight group commits, then close."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.shield(flusher)
        self.close()

    def close(self) -> None:
        """Close the files. Waiting `append_durable` callers get `WalClosedError`."""
        if self._closed:
            return
        self._closed = True
        self._fail_waiters(self._take_all_pending(), WalClosedError("log closed"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._state_lock:
            if self._active_fd is not None:
                os.close(self._active_fd)
                self._active_fd = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class LogReader:
    """Reads the log forward from a seq, call after call, each call resuming at the byte where
    the previous one stopped (a `replay` from a seq reads that seq's segment from its start:
    O(segment) per call, where this is O(records read)). Not thread-safe: one reader, one
    caller at a time; the log it reads may be appended to meanwhile.
    """

    def __init__(self, wal: WriteAheadLog, from_seq: int) -> None:
        self._wal = wal
        self.next_seq = from_seq
        self._segment_first_seq: int | None = None  # the segment `_position` is in
        self._position: SegmentPosition | None = None

    def read_through(self, through_seq: int | None) -> Iterator[WalRecord]:
        """Records from `next_seq` through `through_seq` (None: the last written at call
        time). Raises `WalSeqUnavailableError` if `next_seq` is no longer (or not yet) in the
        log, or `through_seq` is after its last seq; `WalCorruptionError` if a record that
        should be there is not valid (the range is checked at the call, the records as read)."""
        segments, last_seq = self._wal._segments_and_last_seq()
        through = last_seq if through_seq is None else through_seq
        if not segments[0] <= self.next_seq <= last_seq + 1 or through > last_seq:
            raise WalSeqUnavailableError(
                f"seqs {self.next_seq}..{through} not in the log (holds {segments[0]}..{last_seq})"
            )
        return self._read(segments, through)

    def _read(self, segments: list[int], through_seq: int) -> Iterator[WalRecord]:
        index = bisect.bisect_right(segments, self.next_seq) - 1
        while self.next_seq <= through_seq:
            first_seq = segments[index]
            path = self._wal.directory / segment_name(first_seq)
            resume = self._position if self._segment_first_seq == first_seq else None
            reader = SegmentReader(path, first_seq=first_seq, epoch_floor=0, start=resume)
            try:
                for record in reader.records():
                    if record.seq < self.next_seq:
                        continue  # the segment read from its start, up to where we are
                    self._segment_first_seq, self._position = first_seq, reader.position
                    self.next_seq = record.seq + 1
                    yield record
                    if record.seq >= through_seq:
                        return
            except FileNotFoundError as error:  # removed after a snapshot meanwhile
                raise WalSeqUnavailableError(f"{path}: removed while reading") from error
            end = reader.end
            segment_last_seq = segments[index + 1] - 1 if index + 1 < len(segments) else through_seq
            if end is None or end.next_seq <= segment_last_seq:
                reason = (
                    "ended"
                    if end is None or end.bad_record is None
                    else (end.bad_record.reason.value)
                )
                raise WalCorruptionError(
                    f"{path}: replay expected records up to seq {segment_last_seq}, "
                    f"segment {reason} before it"
                )
            index += 1
