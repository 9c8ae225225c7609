"""Memory and open files of the local exchange's processes, read from /proc.

A component is its pid file's process and every descendant (PostgreSQL's backends, Envoy
under its resident parent, the streaming app's workers). Memory is the proportional set
size (`Pss` of /proc/<pid>/smaps_rollup: shared pages divided among the processes that
map them), so PostgreSQL's shared buffers are not counted once per backend; open files are
the entries of /proc/<pid>/fd; CPU is user + system time of /proc/<pid>/stat (all threads),
in seconds since each process started. A process that exits while it is read counts as
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_KIB = 1024
_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    processes: int
    memory_bytes: int  # proportional set size, summed
    open_files: int
    cpu_seconds: float = 0.0  # user + system, summed


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The field after "(command name)" is the state, then the parent pid.
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int, children: Mapping[int, list[int]] | None = None) -> Iterator[int]:
    """`pid` and all its descendants."""
    known = _children_by_parent() if children is None else children
    pending = [pid]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(known.get(current, ()))


def _proportional_set_size_bytes(pid: int) -> int:
    try:
        lines = (_PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("Pss:"):
            return int(line.split()[1]) * _KIB
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # After "(command name)": state, ppid, ... utime and stime are the 12th and 13th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_SECOND


def _open_files(pid: int) -> int:
    try:
        return sum(1 for _ in (_PROC / str(pid) / "fd").iterdir())
    except OSError:
        return 0


def usage_of(pids: Iterable[int], children: Mapping[int, list[int]] | None = None) -> ProcessUsage:
    """The summed usage of the processes `pids` and all their descendants."""
    known = _children_by_parent() if children is None else children
    tree = {member for pid in pids for member in process_tree(pid, known)}
    return ProcessUsage(
        processes=len(tree),
        memory_bytes=sum(_proportional_set_size_bytes(pid) for pid in tree),
        open_files=sum(_open_files(pid) for pid in tree),
        cpu_seconds=sum(_cpu_seconds(pid) for pid in tree),
    )


def stack_usage(var: Path) -> dict[str, ProcessUsage]:
    """Each running component of the stack whose pid files are in `var`/run, by name."""
    children = _children_by_parent()
    usage: dict[str, ProcessUsage] = {}
    for pid_file in sorted((var / "run").glob("*.pid")):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if (_PROC / str(pid)).exists():
            usage[pid_file.stem] = usage_of([pid], children)
    return usage
