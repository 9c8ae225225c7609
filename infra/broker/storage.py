"""Durable storage: one append-only segment log of raw record batches per partition.

Layout under the data directory: `topics/<topic>/<partition>/<base offset:020d>.log`, and
beside each sealed segment its index, `<base offset:020d>.index`.
Each segment holds record batches exactly as the producer sent them, with the base offset
rewritten to the partition's next offset (the batch CRC does not cover the base offset, so
the batch stays valid). The index of the active segment has one entry per batch (first and
last offset, file position, size, max timestamp); a sealed segment's has one per 16 KiB of
batches, in memory and in its `.index` file, so memory does not grow with the number of
batches. A fetch bisects the index and reads only the bytes it returns, whatever the
history. Only the active segment keeps its file open.

Durability: appends go to the file at once, and become visible to readers (the high
watermark) and acknowledged only after an fsync. `Syncer` batches the fsyncs of every
append that arrives while one is running (group commit). A segment is fsynced when it is
sealed (rolled), before the next one gets a byte.

Recovery: the active (last) segment is checked batch by batch (length, CRC, consecutive
offsets) on start and truncated at the first torn or corrupt batch; a crash can only tear
the unsynced tail, which no client was told about. Sealed segments load their `.index`
(checked by covered size and CRC; rebuilt from the batch headers when it is missing or
bad). The newest two segments are always scanned, which also rebuilds the last batches of
every idempotent producer (`recovered_producers`), so a retry after a restart is still
recognised as a duplicate.

Retention: whole segments other than the active one are deleted once their newest record
is older than `retention.ms`, or while the partition is larger than `retention.bytes`; the
log start offset moves to the next segment's base. The active segment rolls after
`segment.bytes` or `segment.ms`.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
import os
import struct
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

LOG = logging.getLogger("infra.broker.storage")

# Record batch v2 header (the fields this broker reads), see the Kafka protocol guide.
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
BATCH_HEADER_SIZE = BATCH_HEADER.size  # 61
LENGTH_PREFIX = 12  # base offset (8) + batch length (4)
CRC_START = 21  # first byte the CRC covers (attributes)
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20

# A sealed segment's index keeps one entry per this many bytes of batches (Kafka's
# index.interval.bytes is 4 KiB): its memory does not grow with the number of batches.
INDEX_INTERVAL_BYTES = 16 * 1024
LAST_DELTA_AT = 23  # where a batch header holds its last offset delta
MAX_TIMESTAMP_AT = 35  # and its max timestamp
SMALL_HEADER = LAST_DELTA_AT + 4
# A sealed segment's index is also written beside it (`<base>.index`), so a start reads
# it instead of every batch header; the newest segments are always scanned, for the
# idempotent producers' last batches.
INDEX_HEADER = struct.Struct(">4sqqI")  # magic, covered log size, entries, crc32c of arrays
INDEX_MAGIC = b"IDX1"
SCANNED_SEGMENTS = 2

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
DEFAULT_SEGMENT_MS = 60 * 60 * 1000
DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000


class CorruptBatchError(ValueError):
    """A produced record set is not a sequence of valid v2 record batches."""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What the broker needs of one record batch header."""

    size: int
    record_count: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    attributes: int


def parse_batches(records: bytes) -> list[tuple[int, BatchInfo]]:
    """Split a produced record set into (start, info) per batch; checks magic and CRC."""
    batches: list[tuple[int, BatchInfo]] = []
    position = 0
    view = memoryview(records)
    while position < len(records):
        if len(records) - position < BATCH_HEADER_SIZE:
            raise CorruptBatchError("truncated record batch header")
        info = _batch_info(view, position)
        if position + info.size > len(records):
            raise CorruptBatchError("truncated record batch")
        crc = struct.unpack_from(">I", view, position + 17)[0]
        if crc != crc32c(view[position + CRC_START : position + info.size]):
            raise CorruptBatchError("record batch CRC mismatch")
        batches.append((position, info))
        position += info.size
    return batches


def _batch_info(view: memoryview | bytes, position: int) -> BatchInfo:
    (
        _base_offset,
        length,
        _leader_epoch,
        magic,
        _crc,
        attributes,
        last_offset_delta,
        _base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        _count,
    ) = BATCH_HEADER.unpack_from(view, position)
    if magic != 2:
        raise CorruptBatchError(f"record batch magic {magic}, only v2 is supported")
    if length < BATCH_HEADER_SIZE - LENGTH_PREFIX:
        raise CorruptBatchError("record batch length too small")
    return BatchInfo(
        size=length + LENGTH_PREFIX,
        record_count=last_offset_delta + 1,
        max_timestamp=max_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        attributes=attributes,
    )


class Syncer:
    """Group commit: every caller of `sync` waits for one fsync of every dirty file."""

    def __init__(self) -> None:
        self._dirty: set[int] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._running: asyncio.Task[None] | None = None

    async def sync(self, fd: int) -> None:
        self._dirty.add(fd)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        await waiter

    async def _run(self) -> None:
        try:
            while self._waiters:
                fds, self._dirty = self._dirty, set()
                waiters, self._waiters = self._waiters, []
                try:
                    await asyncio.to_thread(_fsync_all, fds)
                except OSError as error:
                    LOG.error("ERROR fsync failed: %s", error)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(error)
                    continue
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._running = None


def _fsync_all(fds: set[int]) -> None:
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as error:
            if error.errno != errno.EBADF:  # a segment closed by retention meanwhile
                raise


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _offsets() -> array[int]:
    return array("q")


@dataclass
class Segment:
    """One segment file and its index: entries of consecutive batches (first and last
    offset, file position, byte size, max timestamp), in compact arrays.

    The active segment has one entry per batch and keeps its file open (`fd`). A sealed
    one has one entry per `INDEX_INTERVAL_BYTES` and is opened for each read, so neither
    memory nor open files grow with the number of batches and segments.
    """

    base_offset: int
    path: Path
    fd: int | None
    created_at: float
    size: int = 0
    firsts: array[int] = field(default_factory=_offsets)
    lasts: array[int] = field(default_factory=_offsets)
    positions: array[int] = field(default_factory=_offsets)
    sizes: array[int] = field(default_factory=_offsets)
    max_timestamps: array[int] = field(default_factory=_offsets)
    max_timestamp: int = -1

    @property
    def next_offset(self) -> int:
        return self.lasts[-1] + 1 if self.lasts else self.base_offset

    def index(self, first: int, last: int, position: int, size: int, max_ts: int) -> None:
        self.firsts.append(first)
        self.lasts.append(last)
        self.positions.append(position)
        self.sizes.append(size)
        self.max_timestamps.append(max_ts)
        self.max_timestamp = max(self.max_timestamp, max_ts)

    def coalesce(self) -> None:
        """Merge the per-batch entries into one per `INDEX_INTERVAL_BYTES`."""
        firsts, lasts, positions, sizes, stamps = (_offsets() for _ in range(5))
        for number in range(len(self.firsts)):
            if sizes and sizes[-1] < INDEX_INTERVAL_BYTES:
                lasts[-1] = self.lasts[number]
                sizes[-1] += self.sizes[number]
                stamps[-1] = max(stamps[-1], self.max_timestamps[number])
                continue
            firsts.append(self.firsts[number])
            lasts.append(self.lasts[number])
            positions.append(self.positions[number])
            sizes.append(self.sizes[number])
            stamps.append(self.max_timestamps[number])
        self.firsts, self.lasts, self.positions, self.sizes = firsts, lasts, positions, sizes
        self.max_timestamps = stamps

    def read(
        self, offset: int, high_watermark: int, budget: int, *, at_least_one: bool
    ) -> tuple[bytes, bool]:
        """Whole batches from the one holding `offset`, below `high_watermark`, within
        `budget` bytes (or one batch if `at_least_one`); and whether the segment's end was
        reached (the read may go on in the next segment)."""
        entry = bisect.bisect_left(self.lasts, offset)
        if entry >= len(self.lasts):
            return b"", True
        origin = self.positions[entry]
        # Skipped batches lie inside the entry, returned ones within the budget after it.
        chunk = self.pread(min(self.size - origin, self.sizes[entry] + max(budget, 0)), origin)
        position = 0
        begin = -1
        end = 0
        complete = False
        while True:
            if origin + position >= self.size:
                complete = True
                break
            if position + SMALL_HEADER > len(chunk):
                break  # the next batch does not fit in the budget
            base, length = struct.unpack_from(">qi", chunk, position)
            last = base + struct.unpack_from(">i", chunk, position + LAST_DELTA_AT)[0]
            batch_size = length + LENGTH_PREFIX
            if base >= high_watermark:
                break
            if last < offset:
                position += batch_size
                continue
            if begin < 0:
                begin = position
            over = position + batch_size - begin > budget
            if over and not (at_least_one and begin == position):
                break
            position += batch_size
            end = position
            if over:
                break
        return (chunk[begin:end] if begin >= 0 else b""), complete

    def find_timestamp(self, timestamp: int, high_watermark: int) -> tuple[int, int] | None:
        """(base offset, max timestamp) of the first batch with a record at or after
        `timestamp`, below `high_watermark`."""
        for entry, max_ts in enumerate(self.max_timestamps):
            if max_ts < timestamp or self.firsts[entry] >= high_watermark:
                continue
            chunk = self.pread(self.sizes[entry], self.positions[entry])
            position = 0
            while position + MAX_TIMESTAMP_AT + 8 <= len(chunk):
                base, length = struct.unpack_from(">qi", chunk, position)
                batch_ts = struct.unpack_from(">q", chunk, position + MAX_TIMESTAMP_AT)[0]
                if base >= high_watermark:
                    return None
                if batch_ts >= timestamp:
                    return base, batch_ts
                position += length + LENGTH_PREFIX
        return None

    def pread(self, size: int, position: int) -> bytes:
        if self.fd is not None:
            return os.pread(self.fd, size, position)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(fd, size, position)
        finally:
            os.close(fd)

    def seal(self) -> None:
        """fsync and close: everything in a sealed segment is durable before the next
        segment gets a byte (a crash can tear only the active segment's tail)."""
        if self.fd is not None:
            os.fsync(self.fd)
            self.close()
        self.coalesce()
        self.write_index()

    @property
    def index_path(self) -> Path:
        return self.path.with_suffix(".index")

    def write_index(self) -> None:
        """Write the (coalesced) index beside the segment. Not fsynced: a lost or torn
        index fails its check at start and the segment is scanned instead."""
        arrays = b"".join(
            a.tobytes()
            for a in (self.firsts, self.lasts, self.positions, self.sizes, self.max_timestamps)
        )
        header = INDEX_HEADER.pack(INDEX_MAGIC, self.size, len(self.firsts), crc32c(arrays))
        temporary = self.index_path.with_suffix(".index-new")
        try:
            temporary.write_bytes(header + arrays)
            temporary.replace(self.index_path)
        except OSError as error:
            LOG.warning("could not write %s: %s", self.index_path, error)

    def read_index(self) -> bool:
        """Load the index written at seal, if it is whole and covers the segment's bytes."""
        try:
            data = self.index_path.read_bytes()
        except OSError:
            return False
        if len(data) < INDEX_HEADER.size:
            return False
        magic, size, entries, crc = INDEX_HEADER.unpack_from(data)
        arrays = data[INDEX_HEADER.size :]
        if (
            magic != INDEX_MAGIC
            or size != self.path.stat().st_size
            or len(arrays) != 5 * 8 * entries
            or crc != crc32c(arrays)
        ):
            return False
        loaded = []
        for number in range(5):
            part = _offsets()
            part.frombytes(arrays[number * 8 * entries : (number + 1) * 8 * entries])
            loaded.append(part)
        self.firsts, self.lasts, self.positions, self.sizes, self.max_timestamps = loaded
        self.size = size
        self.max_timestamp = max(self.max_timestamps, default=-1)
        return True

    def delete(self) -> None:
        self.close()
        self.path.unlink()
        self.index_path.unlink(missing_ok=True)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


# Idempotent producer state recovered from the log: producer id -> (epoch, the last five
# batches as (base sequence, last sequence, base offset)).
RecoveredProducers = dict[int, tuple[int, deque[tuple[int, int, int]]]]


@dataclass(frozen=True, slots=True)
class LogConfig:
    retention_ms: int = DEFAULT_RETENTION_MS
    retention_bytes: int = -1
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    segment_ms: int = DEFAULT_SEGMENT_MS

    @classmethod
    def from_topic(cls, configs: dict[str, str]) -> LogConfig:
        def number(name: str, default: int) -> int:
            value = configs.get(name)
            return int(value) if value is not None else default

        return cls(
            retention_ms=number("retention.ms", DEFAULT_RETENTION_MS),
            retention_bytes=number("retention.bytes", -1),
            segment_bytes=number("segment.bytes", DEFAULT_SEGMENT_BYTES),
            segment_ms=number("segment.ms", DEFAULT_SEGMENT_MS),
        )


class PartitionLog:
    """The log of one partition: segments, offsets, appends, reads, retention."""

    def __init__(self, directory: Path, config: LogConfig, syncer: Syncer) -> None:
        self.directory = directory
        self.config = config
        self._syncer = syncer
        directory.mkdir(parents=True, exist_ok=True)
        self.segments: list[Segment] = []
        self.recovered_producers: RecoveredProducers = {}
        self._recover()
        self.high_watermark = self.next_offset
        self._pending_high_watermark = self.next_offset

    # ------------------------------------------------------------------ offsets
    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def next_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        paths = sorted(self.directory.glob("*.log"))
        for number, path in enumerate(paths):
            scan = number >= len(paths) - SCANNED_SEGMENTS
            self.segments.append(self._load(path, active=number == len(paths) - 1, scan=scan))
        if not self.segments:
            self.segments.append(self._new_segment(0))

    def _load(self, path: Path, *, active: bool, scan: bool) -> Segment:
        segment = Segment(base_offset=int(path.stem), path=path, fd=None, created_at=0.0)
        segment.created_at = path.stat().st_mtime
        if not scan and segment.read_index():
            return segment
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        segment.fd = fd
        try:
            self._index_file(segment, fd, active=active)
        except BaseException:
            segment.close()
            raise
        if not active:
            segment.close()
            segment.coalesce()
            if not scan:
                segment.write_index()  # missing or stale: the next start reads it
        return segment

    def _index_file(self, segment: Segment, fd: int, *, active: bool) -> None:
        path = segment.path
        data_size = os.fstat(fd).st_size
        position = 0
        with path.open("rb") as file:
            while position < data_size:
                header = file.read(BATCH_HEADER_SIZE)
                if len(header) < BATCH_HEADER_SIZE:
                    break
                try:
                    info = _batch_info(header, 0)
                except CorruptBatchError:
                    break
                if position + info.size > data_size:
                    break
                first = struct.unpack_from(">q", header, 0)[0]
                if active:
                    rest = file.read(info.size - BATCH_HEADER_SIZE)
                    body = header[CRC_START:] + rest
                    if struct.unpack_from(">I", header, 17)[0] != crc32c(body):
                        break
                    if first != segment.next_offset:
                        break  # not the batch that follows: garbage
                else:
                    file.seek(position + info.size)
                segment.index(
                    first, first + info.record_count - 1, position, info.size, info.max_timestamp
                )
                self._recover_producer(info, first)
                position += info.size
        if position < data_size:
            LOG.warning(
                "truncating torn tail of %s: %d bytes after offset %d",
                path,
                data_size - position,
                segment.next_offset,
            )
            os.ftruncate(fd, position)
            os.fsync(fd)
        segment.size = position

    def _recover_producer(self, info: BatchInfo, first_offset: int) -> None:
        if info.producer_id < 0 or info.base_sequence < 0:
            return
        known = self.recovered_producers.get(info.producer_id)
        if known is None or info.producer_epoch > known[0]:
            known = (info.producer_epoch, deque(maxlen=5))
            self.recovered_producers[info.producer_id] = known
        elif info.producer_epoch < known[0]:
            return
        last = info.base_sequence + info.record_count - 1
        known[1].append((info.base_sequence, last, first_offset))

    def _new_segment(self, base_offset: int) -> Segment:
        path = self.directory / f"{base_offset:020d}.log"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        fsync_directory(self.directory)
        return Segment(base_offset=base_offset, path=path, fd=fd, created_at=time.time())

    # ------------------------------------------------------------------ append
    def append(self, records: bytes, batches: list[tuple[int, BatchInfo]]) -> tuple[int, int]:
        """Write validated `batches` of `records` at the end; (first offset, last offset).

        Visible and durable only after `commit` of the returned last offset.
        """
        active = self._active_for_append()
        data = bytearray(records)
        first_offset = offset = self._pending_next()
        for start, info in batches:
            struct.pack_into(">q", data, start, offset)
            struct.pack_into(">i", data, start + 12, 0)  # partition leader epoch
            offset += info.record_count
        assert active.fd is not None
        try:
            written = os.write(active.fd, data)
            if written != len(data):
                raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes")
        except OSError:
            # Nothing of a failed append may stay: the next batch must follow the last good one.
            os.ftruncate(active.fd, active.size)
            raise
        for start, info in batches:
            first = struct.unpack_from(">q", data, start)[0]
            active.index(
                first,
                first + info.record_count - 1,
                active.size + start,
                info.size,
                info.max_timestamp,
            )
        active.size += len(data)
        self._pending_high_watermark = offset
        return first_offset, offset - 1

    def _pending_next(self) -> int:
        return self.segments[-1].next_offset

    def _active_for_append(self) -> Segment:
        active = self.segments[-1]
        age_ms = (time.time() - active.created_at) * 1000
        full = active.size >= self.config.segment_bytes
        if active.size > 0 and (full or age_ms >= self.config.segment_ms):
            active = self._roll()
        return active

    def _roll(self) -> Segment:
        old = self.segments[-1]
        old.seal()
        active = self._new_segment(old.next_offset)
        self.segments.append(active)
        return active

    async def commit(self, last_offset: int) -> None:
        """fsync the active segment; then offsets up to `last_offset` are visible."""
        fd = self.segments[-1].fd
        assert fd is not None  # the active segment is open; a rolled one was synced
        await self._syncer.sync(fd)
        self.high_watermark = max(self.high_watermark, last_offset + 1)

    # ------------------------------------------------------------------ read
    def read(self, offset: int, max_bytes: int) -> bytes:
        """Whole batches from the one holding `offset`, up to the high watermark and
        `max_bytes` (at least one batch, so a large batch is never stuck)."""
        if offset >= self.high_watermark:
            return b""
        number = bisect.bisect_right(self.segments, offset, key=_base_offset) - 1
        number = max(number, 0)
        chunks: list[bytes] = []
        total = 0
        while number < len(self.segments):
            data, complete = self.segments[number].read(
                offset, self.high_watermark, max_bytes - total, at_least_one=total == 0
            )
            if data:
                chunks.append(data)
                total += len(data)
            if not complete or total >= max_bytes:
                break
            number += 1
        return b"".join(chunks)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first batch holding a record at or after `timestamp`."""
        for segment in self.segments:
            if segment.max_timestamp < timestamp:
                continue
            found = segment.find_timestamp(timestamp, self.high_watermark)
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ retention
    def apply_retention(self, now_ms: int) -> int:
        """Delete old whole segments; the number deleted."""
        deleted = 0
        while len(self.segments) > 1:
            oldest = self.segments[0]
            expired = (
                self.config.retention_ms >= 0
                and oldest.max_timestamp >= 0
                and now_ms - oldest.max_timestamp > self.config.retention_ms
            )
            oversize = (
                self.config.retention_bytes >= 0
                and self.size_bytes - oldest.size >= self.config.retention_bytes
            )
            empty = oldest.size == 0
            if not (expired or oversize or empty):
                break
            self.segments.pop(0)
            oldest.delete()
            deleted += 1
        if deleted:
            fsync_directory(self.directory)
        return deleted

    def roll_if_due(self) -> None:
        """Roll an idle active segment past `segment.ms`, so retention can delete it."""
        active = self.segments[-1]
        if active.size > 0 and (time.time() - active.created_at) * 1000 >= self.config.segment_ms:
            self._roll()

    def close(self) -> None:
        for segment in self.segments:
            segment.close()

    def delete(self) -> None:
        """Remove the partition's files and directory (its topic was deleted)."""
        for segment in self.segments:
            segment.delete()
        for leftover in self.directory.iterdir():
            leftover.unlink()
        self.directory.rmdir()


def _base_offset(segment: Segment) -> int:
    return segment.base_offset
