"""`LogReader`: reads the log forward call after call, resuming at the byte where it stopped
(the historical-state rebuilds bring an engine forward with it, docs/adr/0020)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.wal import WalCorruptionError, WalOptions, WalSeqUnavailableError, WriteAheadLog
from core.wal.log import LogReader
from core.wal.record_format import RECORD_HEADER_BYTES

from .test_wal_log import payload_of, segment_files, write_records


def test_reads_on_across_calls_segments_and_appends(
    wal_dir: Path, small_segments: WalOptions
) -> None:
    write_records(wal_dir, 100, small_segments)
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        assert log.segment_count >= 4
        reader = LogReader(log, 1)
        read = []
        for through in (10, 37, 37, 64, 100):
            read += list(reader.read_through(through))
            assert reader.next_seq == through + 1
        assert [tuple(record) for record in read] == [tuple(record) for record in log.replay()]
        log.append([payload_of(seq) for seq in range(101, 121)])
        assert [record.seq for record in reader.read_through(None)] == list(range(101, 121))
        assert list(reader.read_through(None)) == []


def test_resumes_at_the_byte_where_it_stopped(wal_dir: Path) -> None:
    write_records(wal_dir, 20)
    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        reader = LogReader(log, 1)
        assert [record.seq for record in reader.read_through(15)] == list(range(1, 16))
        # Damage the first ten records in place: a read from the segment's start breaks on
        # them, a resumed one never reads them again.
        (segment,) = segment_files(wal_dir)
        record_bytes = RECORD_HEADER_BYTES + len(payload_of(1))
        with segment.open("r+b") as file:
            file.write(b"\xff" * (10 * record_bytes))
        assert [record.payload for record in reader.read_through(20)] == [
            payload_of(seq) for seq in range(16, 21)
        ]
        with pytest.raises(WalCorruptionError):
            list(log.replay(16))


def test_seqs_outside_the_log_are_a_named_error(wal_dir: Path, small_segments: WalOptions) -> None:
    write_records(wal_dir, 100, small_segments)
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        with pytest.raises(WalSeqUnavailableError):
            LogReader(log, 1).read_through(101)  # after the last seq
        behind = LogReader(log, 1)
        list(behind.read_through(5))
        assert log.remove_segments_before(60) > 0
        with pytest.raises(WalSeqUnavailableError):
            behind.read_through(70)  # its next record was removed with its segment
        assert [record.seq for record in LogReader(log, 60).read_through(62)] == [60, 61, 62]
