"""Small helpers for durable file operations (fsync of directories, atomic replace).

Invariants:
1. `write_file_atomically` leaves either the old file or the complete new file under the
   final name, never a partial one: temp file, write all bytes, fsync, rename, fsync the
   directory (so the rename itself survives a power cut).
2. `write_all` never returns before every byte was accepted by the kernel (short writes loop).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

TEMP_SUFFIX: Final = ".tmp"
FILE_MODE: Final = 0o644

Fsync = Callable[[int], None]


def fsync_directory(directory: Path, *, fsync: Fsync = os.fsync) -> None:
    """Make entries created, renamed or removed in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to `fd` (os.write may accept fewer bytes than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"os.write accepted {written} bytes")
        view = view[written:]


def write_file_atomically(path: Path, data: bytes, *, fsync: Fsync = os.fsync) -> None:
    """Replace `path` with `data` atomically and durably (see invariant 1)."""
    temp_path = path.with_name(path.name + TEMP_SUFFIX)
    fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        write_all(fd, data)
        fsync(fd)
    finally:
        os.close(fd)
    temp_path.replace(path)
    fsync_directory(path.parent, fsync=fsync)
