"""Snapshot store: the engine state at an engine_seq, written atomically, verified on load.

File `snapshot-<engine_seq, 20 digits>.bin`: a 64-byte header then the body (opaque state).

    offset  size  field
    0       8     magic          b"EXSNAP\\x00\\x01"
    8       4     format_version u32 = 1
    12      4     reserved       u32 = 0
    16      8     engine_seq     u64, equal to the seq in the file name
    24      8     body_bytes     u64, equal to file size - 64
    32      32    sha256         over header bytes 0..32 followed by the body

Invariants:
1. A snapshot file under its final name is complete: temp file + fsync + rename + fsync dir.
2. `latest_valid` never returns a snapshot whose header or checksum fails; it skips it, reports
   it in `SnapshotLoad.corrupt`, and falls back to the next older one.
3. At most `keep_count` snapshot files remain after a write (newest by engine_seq); a body is
   at most `state_bytes_max` bytes; at most `snapshot_count_max` files are considered.
4. With a fence, the rename happens under the fence's shared lock after the epoch check, so a
   fenced-out instance cannot publish a snapshot after a newer one took over.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from core.wal.durable_files import FILE_MODE, TEMP_SUFFIX, fsync_directory, write_all
from core.wal.errors import SnapshotCorruptionError, SnapshotError, SnapshotTooLargeError
from core.wal.fencing import EpochFence

SNAPSHOT_MAGIC: Final = b"EXSNAP\x00\x01"
SNAPSHOT_FORMAT_VERSION: Final = 1
SNAPSHOT_HEADER_PREFIX: Final = struct.Struct("<8sIIQQ")
SNAPSHOT_HASH_BYTES: Final = 32
SNAPSHOT_HEADER_BYTES: Final = SNAPSHOT_HEADER_PREFIX.size + SNAPSHOT_HASH_BYTES
SNAPSHOT_NAME_PATTERN: Final = re.compile(r"^snapshot-(\d{20})\.bin$")
SEQ_MAX: Final = 2**64 - 1
MIB: Final = 1024 * 1024

if SNAPSHOT_HEADER_BYTES != 64:
    raise RuntimeError(f"snapshot header must be 64 bytes, is {SNAPSHOT_HEADER_BYTES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    engine_seq: int
    state_bytes: bytes
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptSnapshot:
    path: Path
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotLoad:
    """The newest verified snapshot (None if there is none) and the files skipped on the way."""

    snapshot: Snapshot | None
    corrupt: tuple[CorruptSnapshot, ...]


def snapshot_name(engine_seq: int) -> str:
    return f"snapshot-{engine_seq:020d}.bin"


def encode_snapshot(engine_seq: int, state_bytes: bytes) -> bytes:
    prefix = SNAPSHOT_HEADER_PREFIX.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, 0, engine_seq, len(state_bytes)
    )
    digest = hashlib.sha256(prefix)
    digest.update(state_bytes)
    return prefix + digest.digest() + state_bytes


def decode_snapshot(data: bytes, *, engine_seq: int) -> bytes:
    """Return the body of a snapshot file, or raise `SnapshotCorruptionError`."""
    if len(data) < SNAPSHOT_HEADER_BYTES:
        raise SnapshotCorruptionError(f"{len(data)} bytes, shorter than the header")
    prefix = data[: SNAPSHOT_HEADER_PREFIX.size]
    magic, version, _reserved, header_seq, body_bytes = SNAPSHOT_HEADER_PREFIX.unpack(prefix)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotCorruptionError("bad magic")
    if version != SNAPSHOT_FORMAT_VERSION:
        raise SnapshotCorruptionError(f"unknown format version {version}")
    if header_seq != engine_seq:
        raise SnapshotCorruptionError(f"header engine_seq {header_seq} != file name {engine_seq}")
    if body_bytes != len(data) - SNAPSHOT_HEADER_BYTES:
        raise SnapshotCorruptionError(
            f"header says {body_bytes} body bytes, file has {len(data) - SNAPSHOT_HEADER_BYTES}"
        )
    body = data[SNAPSHOT_HEADER_BYTES:]
    digest = hashlib.sha256(prefix)
    digest.update(body)
    if digest.digest() != data[SNAPSHOT_HEADER_PREFIX.size : SNAPSHOT_HEADER_BYTES]:
        raise SnapshotCorruptionError("sha256 mismatch")
    return body


class SnapshotStore:
    """Snapshots of one shard in one directory (may be the WAL directory)."""

    def __init__(
        self,
        directory: Path,
        *,
        keep_count: int = 3,
        state_bytes_max: int = 1024 * MIB,
        snapshot_count_max: int = 1000,
        fence: EpochFence | None = None,
    ) -> None:
        if keep_count < 1:
            raise ValueError(f"keep_count {keep_count} < 1")
        if state_bytes_max < 1:
            raise ValueError(f"state_bytes_max {state_bytes_max} < 1")
        if snapshot_count_max < keep_count:
            raise ValueError("snapshot_count_max must be >= keep_count")
        self.directory = directory
        self.keep_count = keep_count
        self.state_bytes_max = state_bytes_max
        self.snapshot_count_max = snapshot_count_max
        self.fence = fence
        directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        removed = False
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.endswith(TEMP_SUFFIX) and SNAPSHOT_NAME_PATTERN.match(
                name.removesuffix(TEMP_SUFFIX)
            ):
                Path(entry.path).unlink()
                removed = True
        if removed:
            fsync_directory(self.directory)

    def engine_seqs(self) -> list[int]:
        """Engine seqs of the snapshot files present, ascending (verified or not)."""
        seqs: list[int] = []
        for entry in os.scandir(self.directory):
            match = SNAPSHOT_NAME_PATTERN.match(entry.name)
            if match is None:
                continue
            seqs.append(int(match.group(1)))
            if len(seqs) > self.snapshot_count_max:
                raise SnapshotError(
                    f"{self.directory}: more than {self.snapshot_count_max} snapshot files"
                )
        seqs.sort()
        return seqs

    def write(self, engine_seq: int, state_bytes: bytes) -> Path:
        """Write the snapshot atomically, then keep only the newest `keep_count` files."""
        if not 0 <= engine_seq <= SEQ_MAX:
            raise ValueError(f"engine_seq {engine_seq} out of range")
        if len(state_bytes) > self.state_bytes_max:
            raise SnapshotTooLargeError(
                f"state of {len(state_bytes)} bytes > state_bytes_max {self.state_bytes_max}"
            )
        path = self.directory / snapshot_name(engine_seq)
        temp_path = path.with_name(path.name + TEMP_SUFFIX)
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            write_all(fd, encode_snapshot(engine_seq, state_bytes))
            os.fsync(fd)
        finally:
            os.close(fd)
        guard: AbstractContextManager[None] = (
            nullcontext() if self.fence is None else self.fence.guard()
        )
        try:
            with guard:
                temp_path.replace(path)
                fsync_directory(self.directory)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        self._prune()
        return path

    def _prune(self) -> None:
        seqs = self.engine_seqs()
        stale = seqs[: max(0, len(seqs) - self.keep_count)]
        for engine_seq in stale:
            (self.directory / snapshot_name(engine_seq)).unlink(missing_ok=True)
        if stale:
            fsync_directory(self.directory)

    def load(self, engine_seq: int) -> Snapshot:
        """Read and verify one snapshot; raise `SnapshotCorruptionError` if it fails."""
        path = self.directory / snapshot_name(engine_seq)
        file_bytes = path.stat().st_size
        if file_bytes > SNAPSHOT_HEADER_BYTES + self.state_bytes_max:
            raise SnapshotCorruptionError(f"{path}: {file_bytes} bytes, above state_bytes_max")
        try:
            body = decode_snapshot(path.read_bytes(), engine_seq=engine_seq)
        except SnapshotCorruptionError as error:
            raise SnapshotCorruptionError(f"{path}: {error}") from error
        return Snapshot(engine_seq=engine_seq, state_bytes=body, path=path)

    def latest_valid(self) -> SnapshotLoad:
        """The newest snapshot that verifies; corrupt newer ones are skipped and reported."""
        corrupt: list[CorruptSnapshot] = []
        for engine_seq in reversed(self.engine_seqs()):
            try:
                snapshot = self.load(engine_seq)
            except SnapshotCorruptionError as error:
                path = self.directory / snapshot_name(engine_seq)
                corrupt.append(CorruptSnapshot(path=path, reason=str(error)))
                continue
            return SnapshotLoad(snapshot=snapshot, corrupt=tuple(corrupt))
        return SnapshotLoad(snapshot=None, corrupt=tuple(corrupt))
