"""On-disk format of the write-ahead log: record layout, segment names, segment reader.

Record (little-endian, header 24 bytes, then the payload):

    offset  size  field
    0       4     payload_bytes   u32, <= RECORD_PAYLOAD_BYTES_FORMAT_MAX
    4       4     crc32           u32, zlib.crc32 over seq (u64 LE) + epoch (u64 LE) + payload
    8       8     seq             u64, strictly increasing by 1 across the whole log
    16      8     epoch           u64, writer epoch (fencing), never decreasing along seq
    24      n     payload         opaque bytes

A segment file is named `wal-<first seq, 20 digits>.log` and holds records back to back,
starting with the record whose seq is in its name, with no segment header.

Invariants the reader checks (a failure is a `BadRecord`, never garbage handed to a caller):
1. A record is accepted only if its whole header and payload are inside the file, its length
   is within the format maximum, its CRC matches, and its seq is exactly the expected one.
2. A record whose epoch is lower than the previous record's epoch is a fencing breach, not a
   torn write: the reader raises `WalCorruptionError` for it wherever it is.
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple

from core.wal.errors import WalCorruptionError

RECORD_HEADER: Final = struct.Struct("<IIQQ")
RECORD_HEADER_BYTES: Final = RECORD_HEADER.size
SEQ_EPOCH: Final = struct.Struct("<QQ")
RECORD_PAYLOAD_BYTES_FORMAT_MAX: Final = 64 * 1024 * 1024
SEQ_MAX: Final = 2**64 - 1
EPOCH_MAX: Final = 2**64 - 1
SEGMENT_NAME_PATTERN: Final = re.compile(r"^wal-(\d{20})\.log$")
SEGMENT_READ_BUFFER_BYTES: Final = 1024 * 1024

if RECORD_HEADER_BYTES != 24:
    raise RuntimeError(f"record header must be 24 bytes, is {RECORD_HEADER_BYTES}")


class WalRecord(NamedTuple):
    """One record as replayed: iterate or unpack as (seq, epoch, payload)."""

    seq: int
    epoch: int
    payload: bytes


class BadRecordReason(enum.Enum):
    """Why the reader stopped before the end of a segment file."""

    TORN_HEADER = "torn_header"  # fewer than 24 bytes left in the file
    LENGTH_OUT_OF_RANGE = "length_out_of_range"  # payload length above the format maximum
    TORN_PAYLOAD = "torn_payload"  # header says more payload bytes than the file holds
    CRC_MISMATCH = "crc_mismatch"
    SEQ_DISCONTINUITY = "seq_discontinuity"  # CRC fine but seq is not the expected one


@dataclass(frozen=True, slots=True, kw_only=True)
class BadRecord:
    """Where and why a segment stopped parsing."""

    offset_bytes: int
    reason: BadRecordReason


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentPosition:
    """Just after a valid record of a segment: its byte offset, the next seq and its epoch."""

    offset_bytes: int
    next_seq: int
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentEnd:
    """What a full pass over a segment found."""

    good_bytes: int  # bytes of valid records from the start of the file
    file_bytes: int
    next_seq: int  # seq expected after the last valid record
    last_epoch: int  # epoch of the last valid record (or the floor passed in)
    bad_record: BadRecord | None


def segment_name(first_seq: int) -> str:
    if not 0 <= first_seq <= SEQ_MAX:
        raise ValueError(f"segment first seq {first_seq} out of range")
    return f"wal-{first_seq:020d}.log"


def parse_segment_name(name: str) -> int | None:
    """The first seq encoded in a segment file name, or None if it is not a segment file."""
    match = SEGMENT_NAME_PATTERN.match(name)
    return int(match.group(1)) if match else None


def record_crc(seq: int, epoch: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(SEQ_EPOCH.pack(seq, epoch)))


def encode_record(seq: int, epoch: int, payload: bytes) -> bytes:
    if len(payload) > RECORD_PAYLOAD_BYTES_FORMAT_MAX:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the format maximum")
    header = RECORD_HEADER.pack(len(payload), record_crc(seq, epoch, payload), seq, epoch)
    return header + payload


class SegmentReader:
    """Reads one segment file record by record, validating each (invariant 1).

    `records()` yields valid records; once it is exhausted, `end` says where it stopped.
    `start` resumes at a `position` an earlier reader of the same file reported (the byte
    after a valid record, its next seq and epoch) instead of at the file's first byte.
    `position` is updated before each record is yielded: it is just after that record.
    """

    def __init__(
        self,
        path: Path,
        *,
        first_seq: int,
        epoch_floor: int,
        start: SegmentPosition | None = None,
    ) -> None:
        self.path = path
        self.first_seq = first_seq
        self.epoch_floor = epoch_floor
        if start is None:
            start = SegmentPosition(offset_bytes=0, next_seq=first_seq, epoch=epoch_floor)
        # (offset, next seq, epoch): a tuple per record is cheap on recovery's long reads.
        self._after = (start.offset_bytes, start.next_seq, start.epoch)
        self.end: SegmentEnd | None = None

    @property
    def position(self) -> SegmentPosition:
        offset_bytes, next_seq, epoch = self._after
        return SegmentPosition(offset_bytes=offset_bytes, next_seq=next_seq, epoch=epoch)

    def records(self) -> Iterator[WalRecord]:
        with self.path.open("rb", buffering=SEGMENT_READ_BUFFER_BYTES) as file:
            yield from self._read(file)

    def _read(self, file: BinaryIO) -> Iterator[WalRecord]:
        file.seek(0, 2)
        file_bytes = file.tell()
        offset, expected_seq, last_epoch = self._after
        file.seek(offset)
        bad_reason: BadRecordReason | None = None
        while offset < file_bytes:
            header = file.read(RECORD_HEADER_BYTES)
            if len(header) < RECORD_HEADER_BYTES:
                bad_reason = BadRecordReason.TORN_HEADER
                break
            payload_bytes, crc, seq, epoch = RECORD_HEADER.unpack(header)
            if payload_bytes > RECORD_PAYLOAD_BYTES_FORMAT_MAX:
                bad_reason = BadRecordReason.LENGTH_OUT_OF_RANGE
                break
            if offset + RECORD_HEADER_BYTES + payload_bytes > file_bytes:
                bad_reason = BadRecordReason.TORN_PAYLOAD
                break
            payload = file.read(payload_bytes)
            if len(payload) < payload_bytes:  # the file shrank under us
                bad_reason = BadRecordReason.TORN_PAYLOAD
                break
            if record_crc(seq, epoch, payload) != crc:
                bad_reason = BadRecordReason.CRC_MISMATCH
                break
            if seq != expected_seq:
                bad_reason = BadRecordReason.SEQ_DISCONTINUITY
                break
            if epoch < last_epoch:
                raise WalCorruptionError(
                    f"{self.path}: record seq {seq} at offset {offset} has epoch {epoch} "
                    f"below the previous epoch {last_epoch} (fencing breach)"
                )
            offset += RECORD_HEADER_BYTES + payload_bytes
            expected_seq = seq + 1
            last_epoch = epoch
            self._after = (offset, expected_seq, epoch)
            yield WalRecord(seq, epoch, payload)
        self.end = SegmentEnd(
            good_bytes=offset,
            file_bytes=file_bytes,
            next_seq=expected_seq,
            last_epoch=last_epoch,
            bad_record=(
                None if bad_reason is None else BadRecord(offset_bytes=offset, reason=bad_reason)
            ),
        )
