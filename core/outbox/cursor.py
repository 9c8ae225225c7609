"""The durable publish cursor: the last journal seq (= engine_seq) the broker acknowledged.

File `publish.cursor` in the journal directory, 24 bytes, little-endian: magic b"OBC1",
published_seq u64, epoch u64 (of the instance that wrote it), crc32 of the first 20 bytes.
Replaced atomically (temp + write + fsync + rename + fsync dir, `write_file_atomically`)
under the epoch fence's shared lock after the epoch check, so a fenced-off publisher can
never move the cursor of the instance that took over. A missing file means 0 (nothing
published yet); a damaged one raises `PublishCursorCorruptionError` rather than guessing
(guessing low would only duplicate, guessing high would lose events).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Final

from core.outbox.errors import PublishCursorCorruptionError
from core.wal import EpochFence
from core.wal.durable_files import write_file_atomically

PUBLISH_CURSOR_NAME: Final = "publish.cursor"
CURSOR_MAGIC: Final = b"OBC1"
_BODY: Final = struct.Struct("<4sQQ")
_CRC: Final = struct.Struct("<I")
CURSOR_FILE_BYTES: Final = _BODY.size + _CRC.size


def encode_cursor(published_seq: int, epoch: int) -> bytes:
    body = _BODY.pack(CURSOR_MAGIC, published_seq, epoch)
    return body + _CRC.pack(zlib.crc32(body))


def read_cursor(path: Path) -> int:
    """The published seq stored at `path` (0 if there is no file)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) != CURSOR_FILE_BYTES:
        raise PublishCursorCorruptionError(f"{path}: {len(data)} bytes, not {CURSOR_FILE_BYTES}")
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    magic, published_seq, _epoch = _BODY.unpack(body)
    if magic != CURSOR_MAGIC or zlib.crc32(body) != crc:
        raise PublishCursorCorruptionError(f"{path}: bad magic or checksum")
    return int(published_seq)


def write_cursor(path: Path, published_seq: int, fence: EpochFence) -> None:
    """Store `published_seq` durably, under the fence (raises `FencedError` if fenced out)."""
    with fence.guard():
        write_file_atomically(path, encode_cursor(published_seq, fence.epoch))
