"""Epoch fencing: at most one writer instance of a shard may append at a time.

Files in the fence directory (usually the WAL directory of the shard):
- `fence.lock`: an empty file, only used for `fcntl.flock`.
- `fence.epoch`: 16 bytes, little-endian: magic b"FNC1", epoch u64, crc32 of the first 12
  bytes (u32). Replaced atomically (temp + fsync + rename + fsync dir), never edited in place.

Invariants:
1. Epochs handed out by `acquire_epoch` for one directory are strictly increasing, also across
   processes: the read-increment-write runs under an exclusive flock on `fence.lock`.
2. A writer checks its epoch under a SHARED flock and keeps that lock until its write and
   fsync are done (`EpochFence.guard`). So when `acquire_epoch` returns epoch E+1, every write
   of the epoch-E writer has either finished (and is visible to the new owner's recovery) or
   will be refused with `FencedError`: an older instance never appends after a newer one took
   over.
3. A missing fence file means epoch 0 (nobody acquired yet); a damaged one raises
   `FenceCorruptionError` rather than guessing.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from core.wal.durable_files import FILE_MODE, write_file_atomically
from core.wal.errors import FenceCorruptionError, FencedError, WalClosedError

FENCE_LOCK_NAME: Final = "fence.lock"
FENCE_EPOCH_NAME: Final = "fence.epoch"
FENCE_MAGIC: Final = b"FNC1"
FENCE_BODY: Final = struct.Struct("<4sQ")
FENCE_CRC: Final = struct.Struct("<I")
FENCE_FILE_BYTES: Final = FENCE_BODY.size + FENCE_CRC.size
EPOCH_MAX: Final = 2**64 - 1


def _encode_epoch(epoch: int) -> bytes:
    body = FENCE_BODY.pack(FENCE_MAGIC, epoch)
    return body + FENCE_CRC.pack(zlib.crc32(body))


def _decode_epoch(data: bytes, path: Path) -> int:
    if len(data) != FENCE_FILE_BYTES:
        raise FenceCorruptionError(f"{path}: {len(data)} bytes, expected {FENCE_FILE_BYTES}")
    body = data[: FENCE_BODY.size]
    (crc,) = FENCE_CRC.unpack(data[FENCE_BODY.size :])
    magic, epoch = FENCE_BODY.unpack(body)
    if magic != FENCE_MAGIC or zlib.crc32(body) != crc:
        raise FenceCorruptionError(f"{path}: bad magic or checksum")
    return int(epoch)


def _read_epoch(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        data = os.read(fd, FENCE_FILE_BYTES + 1)
    finally:
        os.close(fd)
    return _decode_epoch(data, path)


def _open_lock(directory: Path) -> int:
    return os.open(directory / FENCE_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def current_epoch(directory: Path) -> int:
    """The highest epoch acquired for `directory` (0 if none); lock-free, a point-in-time read.

    A publisher calls it before publishing; it is a check, not a lease (see the README).
    """
    return _read_epoch(directory / FENCE_EPOCH_NAME)


def acquire_epoch(directory: Path) -> int:
    """Take ownership of the shard: store and return the previous highest epoch + 1."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = _open_lock(directory)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            epoch_path = directory / FENCE_EPOCH_NAME
            epoch = _read_epoch(epoch_path) + 1
            if epoch > EPOCH_MAX:
                raise FenceCorruptionError(f"{epoch_path}: epoch space exhausted")
            write_file_atomically(epoch_path, _encode_epoch(epoch))
            return epoch
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
    finally:
        os.close(lock_fd)


class EpochFence:
    """The check a writer of epoch `epoch` runs around each flush (invariant 2).

    Cost per check: flock(SH) + open/read/close of 16 bytes + flock(UN); see the bench.
    """

    def __init__(self, directory: Path, epoch: int) -> None:
        if not 1 <= epoch <= EPOCH_MAX:
            raise ValueError(f"epoch {epoch} out of range (acquire one with acquire_epoch)")
        self.directory = directory
        self.epoch = epoch
        self.check_count = 0
        self._epoch_path = directory / FENCE_EPOCH_NAME
        self._lock_fd: int | None = _open_lock(directory)

    def check(self) -> None:
        """Raise `FencedError` if a newer epoch exists (no lock held afterwards)."""
        with self.guard():
            pass

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Hold a shared lock while the caller writes; raise FencedError if fenced out."""
        lock_fd = self._lock_fd
        if lock_fd is None:
            raise WalClosedError("fence closed")
        fcntl.flock(lock_fd, fcntl.LOCK_SH)
        try:
            self.check_count += 1
            newest = _read_epoch(self._epoch_path)
            if newest > self.epoch:
                raise FencedError(
                    f"epoch {self.epoch} is fenced out by epoch {newest} in {self.directory}"
                )
            if newest < self.epoch:
                raise FenceCorruptionError(
                    f"{self._epoch_path} holds epoch {newest}, below this writer's {self.epoch}"
                )
            yield
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
