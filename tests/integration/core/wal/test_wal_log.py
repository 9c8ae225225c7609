"""Write-ahead log on real files: round trip, rolling, replay, torn tails, corruption, limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.wal import (
    BadRecordReason,
    RecordTooLargeError,
    WalClosedError,
    WalCorruptionError,
    WalFailedError,
    WalLimitError,
    WalOptions,
    WalSeqUnavailableError,
    WriteAheadLog,
)
from core.wal.record_format import RECORD_HEADER_BYTES, encode_record, segment_name


def payload_of(seq: int) -> bytes:
    return f"command-{seq:06d}".encode()


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def write_records(directory: Path, count: int, options: WalOptions | None = None) -> None:
    with WriteAheadLog.open(directory, epoch=1, options=options) as log:
        seqs = log.append([payload_of(seq) for seq in range(1, count + 1)])
        assert seqs == list(range(1, count + 1))
        assert log.sync() == count


def test_round_trip_survives_reopen(wal_dir: Path) -> None:
    with WriteAheadLog.open(wal_dir, epoch=7) as log:
        assert log.recovery.records_recovered == 0
        assert log.append([b"a", b"", b"c" * 1000]) == [1, 2, 3]
        assert log.durable_seq == 0
        assert log.sync() == 3
        assert log.append([b"d"]) == [4]
        assert log.sync() == 4
    with WriteAheadLog.open(wal_dir, epoch=7) as log:
        assert log.recovery.records_recovered == 4
        assert log.recovery.tail_cut is None
        assert log.durable_seq == 4
        assert [tuple(record) for record in log.replay()] == [
            (1, 7, b"a"),
            (2, 7, b""),
            (3, 7, b"c" * 1000),
            (4, 7, b"d"),
        ]
        assert log.append([b"e"]) == [5]


def test_segments_roll_at_the_byte_limit(wal_dir: Path, small_segments: WalOptions) -> None:
    write_records(wal_dir, 100, small_segments)
    files = segment_files(wal_dir)
    assert len(files) == 4  # 38-byte records, 26 per 1 KiB segment
    assert all(path.stat().st_size <= small_segments.segment_bytes_max for path in files)
    expected_names = [segment_name(int(path.name[4:24])) for path in files]
    assert [path.name for path in files] == expected_names
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        assert log.segment_count == len(files)
        assert [record.payload for record in log.replay()] == [
            payload_of(seq) for seq in range(1, 101)
        ]
        # each segment starts with the record whose seq is in its name
        for path in files:
            first_seq = int(path.name[4:24])
            assert next(iter(log.replay(first_seq))).seq == first_seq


def test_a_single_append_spanning_segments_is_contiguous(
    wal_dir: Path, small_segments: WalOptions
) -> None:
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        seqs = log.append([bytes([seq % 256]) * 200 for seq in range(30)])
        assert seqs == list(range(1, 31))
        log.sync()
        assert log.segment_count >= 6
        assert log.fsync_count >= log.segment_count


@pytest.mark.parametrize("from_seq", [1, 2, 26, 27, 40, 53, 79, 100, 101])
def test_replay_from_a_seq_within_and_across_segments(
    wal_dir: Path, small_segments: WalOptions, from_seq: int
) -> None:
    write_records(wal_dir, 100, small_segments)
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        records = list(log.replay(from_seq))
    assert [record.seq for record in records] == list(range(from_seq, 101))
    assert all(record.payload == payload_of(record.seq) for record in records)
    assert all(record.epoch == 1 for record in records)


def test_replay_outside_the_log_is_a_named_error(wal_dir: Path) -> None:
    write_records(wal_dir, 5)
    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        with pytest.raises(WalSeqUnavailableError):
            log.replay(0)
        with pytest.raises(WalSeqUnavailableError):
            log.replay(7)
        assert list(log.replay(6)) == []


def test_replay_after_removing_old_segments(wal_dir: Path, small_segments: WalOptions) -> None:
    write_records(wal_dir, 100, small_segments)
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        segments_before = log.segment_count
        removed = log.remove_segments_before(60)
        assert removed > 0
        assert log.segment_count == segments_before - removed
        assert log.first_seq <= 60
        with pytest.raises(WalSeqUnavailableError):
            log.replay(log.first_seq - 1)
        assert [record.seq for record in log.replay(60)] == list(range(60, 101))
    with WriteAheadLog.open(wal_dir, epoch=1, options=small_segments) as log:
        assert log.recovery.first_seq == log.first_seq
        assert log.append([b"next"]) == [101]
        log.sync()
        segments_before = log.segment_count
        assert log.remove_segments_before(10_000) == segments_before - 1  # the active one stays
        assert [record.seq for record in log.replay()][-1] == 101


def record_sizes(count: int) -> list[int]:
    return [RECORD_HEADER_BYTES + len(payload_of(seq)) for seq in range(1, count + 1)]


LAST_RECORD_BYTES = RECORD_HEADER_BYTES + len(payload_of(10))


@pytest.mark.parametrize("kept_bytes", range(1, LAST_RECORD_BYTES))
def test_torn_last_record_is_cut_at_every_offset(wal_dir: Path, kept_bytes: int) -> None:
    write_records(wal_dir, 10)
    (segment,) = segment_files(wal_dir)
    good_bytes = sum(record_sizes(9))
    os.truncate(segment, good_bytes + kept_bytes)

    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        cut = log.recovery.tail_cut
        assert cut is not None
        assert cut.offset_bytes == good_bytes
        assert cut.bytes_cut == kept_bytes
        expected_reason = (
            BadRecordReason.TORN_HEADER
            if kept_bytes < RECORD_HEADER_BYTES
            else BadRecordReason.TORN_PAYLOAD
        )
        assert cut.reason is expected_reason
        assert cut.preserved_path is not None
        assert cut.preserved_path.stat().st_size == kept_bytes
        assert segment.stat().st_size == good_bytes
        assert log.durable_seq == 9
        assert [record.payload for record in log.replay()] == [
            payload_of(seq) for seq in range(1, 10)
        ]
        assert log.append([b"after-crash"]) == [10]
        log.sync()
    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        assert log.recovery.tail_cut is None
        assert [record.seq for record in log.replay()] == list(range(1, 11))
        assert [record.payload for record in log.replay(10)] == [b"after-crash"]


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_bit_flip_in_the_last_record_payload_is_cut(wal_dir: Path) -> None:
    write_records(wal_dir, 10)
    (segment,) = segment_files(wal_dir)
    good_bytes = sum(record_sizes(9))
    flip_bit(segment, good_bytes + RECORD_HEADER_BYTES + 3)
    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        cut = log.recovery.tail_cut
        assert cut is not None
        assert cut.reason is BadRecordReason.CRC_MISMATCH
        assert cut.offset_bytes == good_bytes
        assert log.last_seq == 9


def test_bit_flip_in_a_length_field_is_reported(wal_dir: Path) -> None:
    write_records(wal_dir, 10)
    (segment,) = segment_files(wal_dir)
    good_bytes = sum(record_sizes(9))
    flip_bit(segment, good_bytes + 3)  # high byte of payload_bytes: length far beyond the file
    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        cut = log.recovery.tail_cut
        assert cut is not None
        assert cut.reason in {BadRecordReason.LENGTH_OUT_OF_RANGE, BadRecordReason.TORN_PAYLOAD}
        assert log.last_seq == 9


def test_seq_discontinuity_in_the_last_segment_is_cut(wal_dir: Path) -> None:
    write_records(wal_dir, 3)
    (segment,) = segment_files(wal_dir)
    with segment.open("ab") as file:
        file.write(encode_record(5, 1, b"skipped-a-seq"))
    with WriteAheadLog.open(wal_dir, epoch=1) as log:
        cut = log.recovery.tail_cut
        assert cut is not None
        assert cut.reason is BadRecordReason.SEQ_DISCONTINUITY
        assert log.append([b"x"]) == [4]


@pytest.mark.parametrize("where", ["header", "payload", "truncated"])
def test_damage_in_a_non_last_segment_raises(
    wal_dir: Path, small_segments: WalOptions, where: str
) -> None:
    write_records(wal_dir, 100, small_segments)
    files = segment_files(wal_dir)
    middle = files[len(files) // 2]
    if where == "header":
        flip_bit(middle, RECORD_HEADER_BYTES + 9)  # seq of the second record
    elif where == "payload":
        flip_bit(middle, RECORD_HEADER_BYTES + 2)  # payload of the first record
    else:
        os.truncate(middle, middle.stat().st_size - 5)
    with pytest.raises(WalCorruptionError, match="non-last segment"):
        WriteAheadLog.open(wal_dir, epoch=1, options=small_segments)
    assert middle.stat().st_size > 0  # recovery never cuts a non-last segment


def test_a_missing_segment_raises(wal_dir: Path, small_segments: WalOptions) -> None:
    write_records(wal_dir, 100, small_segments)
    files = segment_files(wal_dir)
    files[2].unlink()
    with pytest.raises(WalCorruptionError, match="missing"):
        WriteAheadLog.open(wal_dir, epoch=1, options=small_segments)


def test_epoch_regression_raises(wal_dir: Path) -> None:
    with WriteAheadLog.open(wal_dir, epoch=2) as log:
        log.append([b"a"])
        log.sync()
    (segment,) = segment_files(wal_dir)
    with segment.open("ab") as file:
        file.write(encode_record(2, 1, b"older writer"))
    with pytest.raises(WalCorruptionError, match="fencing breach"):
        WriteAheadLog.open(wal_dir, epoch=3)


def test_limits_are_named_errors_and_keep_the_log_usable(wal_dir: Path) -> None:
    options = WalOptions(
        segment_bytes_max=4096, record_bytes_max=100, group_records_max=4, group_bytes_max=1024
    )
    with WriteAheadLog.open(wal_dir, epoch=1, options=options) as log:
        with pytest.raises(RecordTooLargeError):
            log.append([b"x" * 101])
        with pytest.raises(WalLimitError, match="group_records_max"):
            log.append([b"x"] * 5)
        assert log.append([b"x" * 100]) == [1]
        assert log.sync() == 1


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="segment_bytes_max"):
        WalOptions(segment_bytes_max=100, record_bytes_max=200)
    with pytest.raises(ValueError, match="record_bytes_max"):
        WalOptions(record_bytes_max=0)


def test_failed_fsync_refuses_appends_until_reopen(wal_dir: Path) -> None:
    fail = {"now": False}

    def flaky_fsync(fd: int) -> None:
        if fail["now"]:
            raise OSError(5, "injected EIO")
        os.fsync(fd)

    log = WriteAheadLog.open(wal_dir, epoch=1, fsync=flaky_fsync)
    log.append([b"a"])
    assert log.sync() == 1
    log.append([b"b"])
    fail["now"] = True
    with pytest.raises(OSError, match="injected EIO"):
        log.sync()
    assert log.durable_seq == 1
    fail["now"] = False
    with pytest.raises(WalFailedError):
        log.append([b"c"])
    with pytest.raises(WalFailedError):
        log.sync()
    log.close()
    with pytest.raises(WalClosedError):
        log.append([b"d"])
    with WriteAheadLog.open(wal_dir, epoch=1) as reopened:
        assert reopened.last_seq in {1, 2}  # "b" was written, never acknowledged
        assert reopened.append([b"c"]) == [reopened.last_seq]
