"""Consumer groups (the classic JoinGroup/SyncGroup protocol) and their committed offsets.

A rebalance completes as soon as every known member has rejoined (a lone member joins at
once; no initial delay), or when the longest rebalance timeout passes, dropping the members
that did not rejoin. Members whose session times out are removed by `expire`.
Committed offsets are appended to `offsets.log` (JSON lines) and fsynced before the answer;
the file is compacted on start and whenever it holds many more lines than offsets, so it
does not grow with the number of commits.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from infra.broker.storage import Syncer, fsync_directory

NONE = 0
COMPACT_AFTER_LINES = 1_000
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"


@dataclass
class Member:
    member_id: str
    client_id: str
    group_instance_id: str | None
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    last_seen: float = field(default_factory=time.monotonic)
    join: asyncio.Future[JoinResult] | None = None
    sync: asyncio.Future[tuple[int, bytes]] | None = None
    assignment: bytes = b""


@dataclass(frozen=True, slots=True)
class JoinResult:
    error_code: int
    generation_id: int
    protocol_type: str | None
    protocol_name: str | None
    leader: str
    member_id: str
    members: list[tuple[str, str | None, bytes]]


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: dict[str, Member] = field(default_factory=dict)
    rebalance_deadline: asyncio.TimerHandle | None = None


class GroupCoordinator:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def group(self, group_id: str) -> Group:
        return self.groups.setdefault(group_id, Group(group_id))

    # ------------------------------------------------------------------ join
    async def join(
        self,
        *,
        group_id: str,
        member_id: str,
        client_id: str,
        group_instance_id: str | None,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
    ) -> JoinResult:
        group = self.group(group_id)
        if group.members and group.protocol_type not in (None, protocol_type):
            return _join_error(INCONSISTENT_GROUP_PROTOCOL, member_id)
        if member_id and member_id not in group.members:
            return _join_error(UNKNOWN_MEMBER_ID, member_id)
        if not member_id:
            member_id = f"{client_id or 'member'}-{uuid.uuid4()}"
        member = group.members.get(member_id)
        if member is None:
            member = Member(
                member_id=member_id,
                client_id=client_id,
                group_instance_id=group_instance_id,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                protocol_type=protocol_type,
                protocols=protocols,
            )
            group.members[member_id] = member
        else:
            member.protocols = protocols
            member.session_timeout_ms = session_timeout_ms
            member.rebalance_timeout_ms = rebalance_timeout_ms
        member.last_seen = time.monotonic()
        group.protocol_type = protocol_type
        if member.join is not None and not member.join.done():
            member.join.set_result(_join_error(REBALANCE_IN_PROGRESS, member_id))
        member.join = asyncio.get_running_loop().create_future()
        waiter = member.join
        self._prepare_rebalance(group)
        self._maybe_complete_join(group)
        return await waiter

    def _prepare_rebalance(self, group: Group) -> None:
        if group.state == PREPARING:
            return
        if group.state == COMPLETING:
            for member in group.members.values():
                if member.sync is not None and not member.sync.done():
                    member.sync.set_result((REBALANCE_IN_PROGRESS, b""))
        group.state = PREPARING
        timeout_ms = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        loop = asyncio.get_running_loop()
        group.rebalance_deadline = loop.call_later(
            timeout_ms / 1000, self._rebalance_timed_out, group
        )

    def _rebalance_timed_out(self, group: Group) -> None:
        group.rebalance_deadline = None
        if group.state != PREPARING:
            return
        for member_id, member in list(group.members.items()):
            if member.join is None or member.join.done():
                del group.members[member_id]
        self._maybe_complete_join(group, force=True)

    def _maybe_complete_join(self, group: Group, *, force: bool = False) -> None:
        if group.state != PREPARING:
            return
        joined = [m for m in group.members.values() if m.join is not None and not m.join.done()]
        if not force and len(joined) < len(group.members):
            return
        if group.rebalance_deadline is not None:
            group.rebalance_deadline.cancel()
            group.rebalance_deadline = None
        if not group.members:
            group.state = EMPTY
            group.generation_id += 1
            group.leader = ""
            return
        group.generation_id += 1
        group.protocol_name = _choose_protocol(list(group.members.values()))
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        listing = [
            (m.member_id, m.group_instance_id, dict(m.protocols).get(group.protocol_name, b""))
            for m in group.members.values()
        ]
        for member in group.members.values():
            if member.join is None or member.join.done():
                continue
            member.join.set_result(
                JoinResult(
                    error_code=NONE,
                    generation_id=group.generation_id,
                    protocol_type=group.protocol_type,
                    protocol_name=group.protocol_name,
                    leader=group.leader,
                    member_id=member.member_id,
                    members=listing if member.member_id == group.leader else [],
                )
            )

    # ------------------------------------------------------------------ sync
    async def sync(
        self,
        *,
        group_id: str,
        member_id: str,
        generation_id: int,
        assignments: dict[str, bytes],
    ) -> tuple[int, bytes]:
        group = self.group(group_id)
        member = group.members.get(member_id)
        if member is None:
            return UNKNOWN_MEMBER_ID, b""
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION, b""
        if group.state == PREPARING:
            return REBALANCE_IN_PROGRESS, b""
        member.last_seen = time.monotonic()
        if group.state == STABLE:
            return NONE, member.assignment
        if member_id == group.leader:
            for other in group.members.values():
                other.assignment = assignments.get(other.member_id, b"")
                if other.sync is not None and not other.sync.done():
                    other.sync.set_result((NONE, other.assignment))
            group.state = STABLE
            return NONE, member.assignment
        member.sync = asyncio.get_running_loop().create_future()
        return await member.sync

    # ------------------------------------------------------------------ heartbeat, leave
    def heartbeat(self, *, group_id: str, member_id: str, generation_id: int) -> int:
        group = self.group(group_id)
        member = group.members.get(member_id)
        if member is None:
            return UNKNOWN_MEMBER_ID
        member.last_seen = time.monotonic()
        if group.state == PREPARING:
            return REBALANCE_IN_PROGRESS
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION
        return NONE

    def leave(self, *, group_id: str, member_ids: list[str]) -> dict[str, int]:
        group = self.group(group_id)
        results: dict[str, int] = {}
        for member_id in member_ids:
            member = group.members.pop(member_id, None)
            results[member_id] = NONE if member is not None else UNKNOWN_MEMBER_ID
            if member is not None and member.join is not None and not member.join.done():
                member.join.set_result(_join_error(UNKNOWN_MEMBER_ID, member_id))
        if any(code == NONE for code in results.values()):
            self._membership_changed(group)
        return results

    def _membership_changed(self, group: Group) -> None:
        if not group.members:
            if group.rebalance_deadline is not None:
                group.rebalance_deadline.cancel()
                group.rebalance_deadline = None
            group.state = EMPTY
            group.generation_id += 1
            group.leader = ""
            return
        self._prepare_rebalance(group)
        self._maybe_complete_join(group)

    def expire(self) -> None:
        """Remove members whose session timed out (not while they wait in a join)."""
        now = time.monotonic()
        for group in self.groups.values():
            expired = [
                member_id
                for member_id, member in group.members.items()
                if (member.join is None or member.join.done())
                and (member.sync is None or member.sync.done())
                and now - member.last_seen > member.session_timeout_ms / 1000
            ]
            if expired:
                for member_id in expired:
                    del group.members[member_id]
                self._membership_changed(group)

    def check_commit(self, group_id: str, member_id: str, generation_id: int) -> int:
        """The error for an offset commit from this member and generation (0: accept)."""
        if generation_id < 0:
            return NONE
        group = self.groups.get(group_id)
        if group is None or member_id not in group.members:
            return UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION
        group.members[member_id].last_seen = time.monotonic()
        return NONE


def _join_error(code: int, member_id: str) -> JoinResult:
    return JoinResult(code, -1, None, None, "", member_id, [])


def _choose_protocol(members: list[Member]) -> str:
    """The first protocol, in the first member's order of preference, that all support."""
    common = {name for name, _ in members[0].protocols}
    for member in members[1:]:
        common &= {name for name, _ in member.protocols}
    for name, _ in members[0].protocols:
        if name in common:
            return name
    return members[0].protocols[0][0]


class OffsetStore:
    """Committed offsets per (group, topic, partition), durable in `offsets.log`."""

    def __init__(self, path: Path, syncer: Syncer) -> None:
        self._path = path
        self._syncer = syncer
        self.offsets: dict[tuple[str, str, int], tuple[int, str | None]] = {}
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    group, topic, partition, offset, metadata = json.loads(line)
                except ValueError:
                    continue  # a torn last line of a crash
                self.offsets[(group, topic, partition)] = (offset, metadata)
        self._fd = -1
        self._lines = 0
        self._compact()

    def _compact(self) -> None:
        """Rewrite the file with one line per offset (atomically: a new file renamed over)."""
        compacted = self._path.with_suffix(".compacting")
        with compacted.open("w") as file:
            for (group, topic, partition), (offset, metadata) in self.offsets.items():
                file.write(json.dumps([group, topic, partition, offset, metadata]) + "\n")
            file.flush()
            os.fsync(file.fileno())
        compacted.replace(self._path)
        fsync_directory(self._path.parent)
        old, self._fd = self._fd, os.open(self._path, os.O_WRONLY | os.O_APPEND)
        if old >= 0:
            os.close(old)  # a pending fsync of it is moot: the new file holds its lines
        self._lines = len(self.offsets)

    async def commit(self, entries: list[tuple[str, str, int, int, str | None]]) -> None:
        lines = b"".join(json.dumps(list(entry)).encode() + b"\n" for entry in entries)
        os.write(self._fd, lines)
        self._lines += len(entries)
        for group, topic, partition, offset, metadata in entries:
            self.offsets[(group, topic, partition)] = (offset, metadata)
        if self._lines > COMPACT_AFTER_LINES + 4 * len(self.offsets):
            self._compact()  # synced: nothing left to wait for
            return
        await self._syncer.sync(self._fd)

    def fetch(self, group: str, topic: str, partition: int) -> tuple[int, str | None] | None:
        return self.offsets.get((group, topic, partition))

    def committed_partitions(self, group: str) -> dict[str, list[int]]:
        result: dict[str, list[int]] = {}
        for g, topic, partition in self.offsets:
            if g == group:
                result.setdefault(topic, []).append(partition)
        return result

    def close(self) -> None:
        os.close(self._fd)
