"""Kafka transactions for the single-node broker: the transaction coordinator and the
per-partition transaction state (ongoing transactions, last stable offset, aborted index).

Coordinator: one `Transaction` per transactional id (producer id, epoch, state, partitions,
consumer groups, pending offsets). `InitProducerId` bumps the epoch, which fences the older
producer of the same transactional id (its coordinator requests get PRODUCER_FENCED, its
produces INVALID_PRODUCER_EPOCH), and aborts the transaction it left open. `EndTxn`
persists PrepareCommit/PrepareAbort (with the pending offsets), writes a control batch
(COMMIT/ABORT marker) into every partition of the transaction, applies the pending offsets
to the group's committed offsets on commit, then persists CompleteCommit/CompleteAbort;
it answers once all of it is durable.

Partitions: the first transactional batch of a producer on a partition opens an ongoing
entry (its first offset); the marker closes it. The last stable offset (LSO) is the
smallest first offset of the ongoing entries, else the high watermark; READ_COMMITTED
fetches stop there. An abort adds (producer id, first offset, marker offset) to the
partition's aborted index, which READ_COMMITTED fetches return so clients drop those
records.

Durability: `transactions.log` in the data directory, JSON lines, fsynced (with the
segments' group commit) before a request that changed it is answered: transaction records
(last wins), `begin` (first transactional offset on a partition) and `marker` lines. It is
replayed and compacted on start (aborted entries below the log start offset dropped, and
transactional ids idle for 7 days forgotten, as Kafka's transactional.id.expiration.ms).
Pending offsets are kept in memory until EndTxn: a crash before it aborts the transaction.

Restart: a transaction left Ongoing is aborted at start with an epoch bump (ABORT markers
written before the broker serves); one left in PrepareCommit/PrepareAbort is completed
(the client was answered, or will retry EndTxn and get the same outcome). Its producer
gets PRODUCER_FENCED / INVALID_PRODUCER_EPOCH on its next request and must re-init.

Expiry: an Ongoing transaction older than its `transaction.timeout.ms` is aborted with an
epoch bump, as Kafka does. In addition, one whose producer has no open connection to the
broker for `orphan_seconds` is aborted the same way (a SIGKILLed producer closes its
sockets at once): Kafka would wait for the timeout (60 s by default in librdkafka) with the
LSO of every partition of it stuck meanwhile; a local stack has no network partitions
that could make a live producer look gone for that long, and a live one that is fenced
this way fails its commit and re-inits (no duplicate, no loss).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crc32c import crc32c

from infra.broker.storage import (
    CONTROL_FLAG,
    TRANSACTIONAL_FLAG,
    BatchInfo,
    PartitionLog,
    Syncer,
    parse_batches,
)

LOG = logging.getLogger("infra.broker.transactions")

NONE = 0
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUEST = 42
PRODUCER_FENCED = 90

EMPTY = "Empty"
ONGOING = "Ongoing"
PREPARE_COMMIT = "PrepareCommit"
PREPARE_ABORT = "PrepareAbort"
COMPLETE_COMMIT = "CompleteCommit"
COMPLETE_ABORT = "CompleteAbort"
PREPARING = (PREPARE_COMMIT, PREPARE_ABORT)

MAX_EPOCH = 32766
MAX_TRANSACTION_TIMEOUT_MS = 15 * 60 * 1000  # Kafka's transaction.max.timeout.ms
# Kafka's transactional.id.expiration.ms: an idle id is forgotten (at the next start).
ID_EXPIRATION_SECONDS = 7 * 24 * 60 * 60

TopicPartition = tuple[str, int]
OffsetKey = tuple[str, str, int]  # group, topic, partition
OffsetEntry = tuple[str, str, int, int, str | None]


@dataclass
class Transaction:
    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    state: str = EMPTY
    last_epoch: int = -1  # the epoch before the coordinator's own bump (KIP-360 recovery)
    partitions: set[TopicPartition] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    offsets: dict[OffsetKey, tuple[int, str | None]] = field(default_factory=dict)
    started: float = 0.0
    updated: float = field(default_factory=time.time)  # wall clock of the last record
    connections: set[int] = field(default_factory=set)
    orphaned_at: float | None = None

    def record(self) -> dict[str, Any]:
        return {
            "k": "txn",
            "tid": self.transactional_id,
            "pid": self.producer_id,
            "epoch": self.epoch,
            "last_epoch": self.last_epoch,
            "timeout": self.timeout_ms,
            "state": self.state,
            "partitions": sorted([t, p] for t, p in self.partitions),
            "groups": sorted(self.groups),
            "offsets": [[g, t, p, o, m] for (g, t, p), (o, m) in self.offsets.items()],
            "updated": self.updated,
        }


@dataclass
class PartitionTransactions:
    """Ongoing and aborted transactions of one partition."""

    ongoing: dict[int, int] = field(default_factory=dict)  # producer id -> first offset
    aborted: list[tuple[int, int, int]] = field(default_factory=list)  # (last, pid, first)

    def last_stable_offset(self, high_watermark: int) -> int:
        return min(min(self.ongoing.values(), default=high_watermark), high_watermark)

    def aborted_between(self, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions overlapping [start, end)."""
        index = bisect.bisect_left(self.aborted, (start, -1, -1))
        return [(pid, first) for _, pid, first in self.aborted[index:] if first < end]


class TransactionCoordinator:
    def __init__(
        self,
        path: Path,
        syncer: Syncer,
        *,
        log_for: Callable[[str, int], PartitionLog | None],
        allocate_producer_id: Callable[[], int],
        commit_offsets: Callable[[list[OffsetEntry]], Awaitable[None]],
        on_marker: Callable[[str, int, int, int], None],
        notify: Callable[[], None],
        orphan_seconds: float = 5.0,
    ) -> None:
        self._path = path
        self._syncer = syncer
        self._log_for = log_for
        self._allocate = allocate_producer_id
        self._commit_offsets = commit_offsets
        self._on_marker = on_marker
        self._notify = notify
        self.orphan_seconds = orphan_seconds
        self.transactions: dict[str, Transaction] = {}
        self.by_producer: dict[int, Transaction] = {}
        self.partitions: dict[TopicPartition, PartitionTransactions] = {}
        self._busy: dict[str, asyncio.Lock] = {}
        self._load()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        if self._path.exists():
            for line in self._path.read_bytes().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line of a crash
                self._replay(entry)
        self._compact()

    def _replay(self, entry: dict[str, Any]) -> None:
        kind = entry["k"]
        if kind == "txn":
            txn = Transaction(
                transactional_id=entry["tid"],
                producer_id=entry["pid"],
                epoch=entry["epoch"],
                timeout_ms=entry["timeout"],
                state=entry["state"],
                last_epoch=entry["last_epoch"],
                partitions={(t, p) for t, p in entry["partitions"]},
                groups=set(entry["groups"]),
                offsets={(g, t, p): (o, m) for g, t, p, o, m in entry["offsets"]},
                updated=entry.get("updated", time.time()),
            )
            old = self.transactions.get(txn.transactional_id)
            if old is not None and self.by_producer.get(old.producer_id) is old:
                del self.by_producer[old.producer_id]
            self.transactions[txn.transactional_id] = txn
            self.by_producer[txn.producer_id] = txn
        elif kind == "begin":
            state = self.partition(entry["t"], entry["p"])
            state.ongoing.setdefault(entry["pid"], entry["first"])
        elif kind == "marker":
            state = self.partition(entry["t"], entry["p"])
            state.ongoing.pop(entry["pid"], None)
            if not entry["commit"] and entry["first"] is not None:
                bisect.insort(state.aborted, (entry["last"], entry["pid"], entry["first"]))

    def _compact(self) -> None:
        expired = time.time() - ID_EXPIRATION_SECONDS
        for tid, txn in list(self.transactions.items()):
            if txn.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT) and txn.updated < expired:
                del self.transactions[tid]
                if self.by_producer.get(txn.producer_id) is txn:
                    del self.by_producer[txn.producer_id]
        lines: list[dict[str, Any]] = [txn.record() for txn in self.transactions.values()]
        for (topic, number), state in list(self.partitions.items()):
            log = self._log_for(topic, number)
            if log is None:
                del self.partitions[(topic, number)]
                continue
            state.aborted = [a for a in state.aborted if a[0] >= log.log_start_offset]
            for pid, first in state.ongoing.items():
                lines.append({"k": "begin", "t": topic, "p": number, "pid": pid, "first": first})
            for last, pid, first in state.aborted:
                lines.append(
                    {
                        "k": "marker",
                        "t": topic,
                        "p": number,
                        "pid": pid,
                        "first": first,
                        "last": last,
                        "commit": False,
                    }
                )
        compacted = self._path.with_suffix(".compacting")
        with compacted.open("w") as file:
            for line in lines:
                file.write(json.dumps(line) + "\n")
            file.flush()
            os.fsync(file.fileno())
        compacted.replace(self._path)

    def _write(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, json.dumps(entry).encode() + b"\n")

    async def sync(self) -> None:
        await self._syncer.sync(self._fd)

    async def _persist(self, txn: Transaction) -> None:
        txn.updated = time.time()
        self._write(txn.record())
        await self.sync()

    def close(self) -> None:
        os.close(self._fd)

    def migrate(self, legacy: dict[str, list[int]]) -> None:
        """Producer ids of transactional ids from an older `state.json`."""
        for tid, (pid, epoch) in legacy.items():
            if tid not in self.transactions:
                txn = Transaction(tid, pid, epoch, 60_000)
                self.transactions[tid] = txn
                self.by_producer[pid] = txn
                self._write(txn.record())

    # ------------------------------------------------------------------ partitions
    def partition(self, topic: str, number: int) -> PartitionTransactions:
        return self.partitions.setdefault((topic, number), PartitionTransactions())

    def last_stable_offset(self, topic: str, number: int, high_watermark: int) -> int:
        state = self.partitions.get((topic, number))
        return high_watermark if state is None else state.last_stable_offset(high_watermark)

    def aborted(self, topic: str, number: int, start: int, end: int) -> list[tuple[int, int]]:
        state = self.partitions.get((topic, number))
        return [] if state is None else state.aborted_between(start, end)

    def prune(self, topic: str, number: int, log_start_offset: int) -> None:
        state = self.partitions.get((topic, number))
        if state is not None and state.aborted and state.aborted[0][0] < log_start_offset:
            state.aborted = [a for a in state.aborted if a[0] >= log_start_offset]

    def forget_topic(self, topic: str) -> None:
        for key in [key for key in self.partitions if key[0] == topic]:
            del self.partitions[key]

    def unstable(self, group: str, topic: str, number: int) -> bool:
        """Whether a transaction not yet complete holds offsets for this partition."""
        return any(
            (group, topic, number) in txn.offsets
            for txn in self.transactions.values()
            if txn.state in (ONGOING, *PREPARING)
        )

    # ------------------------------------------------------------------ produce
    def check_produce(
        self, topic: str, number: int, batches: list[tuple[int, BatchInfo]], connection: int
    ) -> int:
        """The error for the transactional batches of a produce (0: accept)."""
        for _, info in batches:
            if info.attributes & CONTROL_FLAG:
                return INVALID_REQUEST  # markers are the coordinator's
            if not info.attributes & TRANSACTIONAL_FLAG:
                continue
            txn = self.by_producer.get(info.producer_id)
            if txn is None:
                return INVALID_PRODUCER_ID_MAPPING
            if info.producer_epoch != txn.epoch:
                return INVALID_PRODUCER_EPOCH
            if txn.state != ONGOING or (topic, number) not in txn.partitions:
                return INVALID_TXN_STATE
            self._touch(txn, connection)
        return NONE

    def record_produce(
        self, topic: str, number: int, batches: list[tuple[int, BatchInfo]], first_offset: int
    ) -> bool:
        """Open the ongoing entries of appended transactional batches; True if the
        transaction log was written (the caller then awaits `sync`)."""
        wrote = False
        offset = first_offset
        for _, info in batches:
            if info.attributes & TRANSACTIONAL_FLAG:
                state = self.partition(topic, number)
                if info.producer_id not in state.ongoing:
                    state.ongoing[info.producer_id] = offset
                    self._write(
                        {
                            "k": "begin",
                            "t": topic,
                            "p": number,
                            "pid": info.producer_id,
                            "first": offset,
                        }
                    )
                    wrote = True
            offset += info.record_count
        return wrote

    # ------------------------------------------------------------------ connections
    def _touch(self, txn: Transaction, connection: int) -> None:
        txn.connections.add(connection)
        txn.orphaned_at = None

    def connection_closed(self, connection: int) -> None:
        now = time.monotonic()
        for txn in self.transactions.values():
            if connection in txn.connections:
                txn.connections.discard(connection)
                if not txn.connections:
                    txn.orphaned_at = now

    # ------------------------------------------------------------------ coordinator
    def _lock(self, tid: str) -> asyncio.Lock:
        return self._busy.setdefault(tid, asyncio.Lock())

    def _check(self, txn: Transaction | None, producer_id: int, epoch: int) -> int:
        if txn is None or txn.producer_id != producer_id:
            return INVALID_PRODUCER_ID_MAPPING
        if epoch != txn.epoch:
            return PRODUCER_FENCED
        if txn.state in PREPARING:
            return CONCURRENT_TRANSACTIONS
        return NONE

    async def init_producer_id(
        self,
        tid: str,
        timeout_ms: int,
        producer_id: int,
        epoch: int,
        connection: int,
    ) -> tuple[int, int, int]:
        """(error, producer id, epoch) for a transactional producer."""
        if not 0 < timeout_ms <= MAX_TRANSACTION_TIMEOUT_MS:
            return INVALID_TRANSACTION_TIMEOUT, -1, -1
        lock = self._lock(tid)
        if lock.locked():
            return CONCURRENT_TRANSACTIONS, -1, -1
        async with lock:
            txn = self.transactions.get(tid)
            if txn is None:
                txn = Transaction(tid, self._allocate(), 0, timeout_ms)
                self.transactions[tid] = txn
                self.by_producer[txn.producer_id] = txn
            else:
                if producer_id >= 0 and (
                    producer_id != txn.producer_id or epoch not in (txn.epoch, txn.last_epoch)
                ):
                    return PRODUCER_FENCED, -1, -1
                if txn.state == ONGOING:
                    await self._complete(txn, commit=False, bump=True)  # fences the old one
                else:
                    if txn.state in PREPARING:
                        await self._complete(txn, commit=txn.state == PREPARE_COMMIT, bump=False)
                    self._bump(txn)
                txn.last_epoch = -1
                txn.connections.clear()
                txn.timeout_ms = timeout_ms
                txn.state = EMPTY
            self._touch(txn, connection)
            await self._persist(txn)
            return NONE, txn.producer_id, txn.epoch

    def _bump(self, txn: Transaction) -> None:
        txn.last_epoch = txn.epoch
        if txn.epoch >= MAX_EPOCH:
            del self.by_producer[txn.producer_id]
            txn.producer_id = self._allocate()
            txn.epoch = 0
            self.by_producer[txn.producer_id] = txn
        else:
            txn.epoch += 1

    async def add_partitions(
        self, tid: str, producer_id: int, epoch: int, wanted: list[TopicPartition], connection: int
    ) -> dict[TopicPartition, int]:
        txn = self.transactions.get(tid)
        code = self._check(txn, producer_id, epoch)
        if code != NONE or txn is None:
            return dict.fromkeys(wanted, code)
        unknown = [tp for tp in wanted if self._log_for(*tp) is None]
        if unknown:
            return {tp: UNKNOWN_TOPIC_OR_PARTITION if tp in unknown else 0 for tp in wanted}
        self._touch(txn, connection)
        added = set(wanted) - txn.partitions
        if added or txn.state != ONGOING:
            self._start(txn)
            txn.partitions |= added
            await self._persist(txn)
        return dict.fromkeys(wanted, NONE)

    def _start(self, txn: Transaction) -> None:
        if txn.state != ONGOING:
            txn.state = ONGOING
            txn.started = time.monotonic()
            txn.partitions.clear()
            txn.groups.clear()
            txn.offsets.clear()

    async def add_offsets(
        self, tid: str, producer_id: int, epoch: int, group: str, connection: int
    ) -> int:
        txn = self.transactions.get(tid)
        code = self._check(txn, producer_id, epoch)
        if code != NONE or txn is None:
            return code
        self._touch(txn, connection)
        if group not in txn.groups or txn.state != ONGOING:
            self._start(txn)
            txn.groups.add(group)
            await self._persist(txn)
        return NONE

    def txn_offset_commit(
        self,
        tid: str,
        producer_id: int,
        epoch: int,
        group: str,
        entries: list[tuple[str, int, int, str | None]],
        *,
        connection: int,
    ) -> int:
        """Keep the offsets pending in the transaction (applied by a commit). Not fsynced:
        until EndTxn persists them with PrepareCommit, a crash aborts the transaction."""
        txn = self.transactions.get(tid)
        code = self._check(txn, producer_id, epoch)
        if code == INVALID_PRODUCER_ID_MAPPING:
            return PRODUCER_FENCED if txn is not None else code
        if code != NONE or txn is None:
            return code
        if txn.state != ONGOING or group not in txn.groups:
            return INVALID_TXN_STATE
        self._touch(txn, connection)
        for topic, number, offset, metadata in entries:
            txn.offsets[(group, topic, number)] = (offset, metadata)
        return NONE

    async def end_txn(
        self, tid: str, producer_id: int, epoch: int, *, commit: bool, connection: int
    ) -> int:
        txn = self.transactions.get(tid)
        if txn is None or txn.producer_id != producer_id:
            return INVALID_PRODUCER_ID_MAPPING
        if epoch != txn.epoch:
            return PRODUCER_FENCED
        lock = self._lock(tid)
        if lock.locked() or txn.state in PREPARING:
            return CONCURRENT_TRANSACTIONS
        async with lock:
            self._touch(txn, connection)
            if txn.state == (COMPLETE_COMMIT if commit else COMPLETE_ABORT):
                return NONE  # a retry of the EndTxn that completed it
            if txn.state != ONGOING:
                return INVALID_TXN_STATE
            await self._complete(txn, commit=commit, bump=False)
            return NONE

    async def _complete(self, txn: Transaction, *, commit: bool, bump: bool) -> None:
        """Prepare (durably), write the markers, apply the offsets, complete."""
        if bump:
            self._bump(txn)
        txn.state = PREPARE_COMMIT if commit else PREPARE_ABORT
        if not commit:
            txn.offsets.clear()
        await self._persist(txn)
        await self._write_markers(txn, commit=commit)
        if commit and txn.offsets:
            await self._commit_offsets(
                [(g, t, p, o, m) for (g, t, p), (o, m) in txn.offsets.items()]
            )
        txn.state = COMPLETE_COMMIT if commit else COMPLETE_ABORT
        txn.partitions.clear()
        txn.groups.clear()
        txn.offsets.clear()
        await self._persist(txn)
        LOG.info(
            "%s transaction of %s (producer %d epoch %d)",
            "committed" if commit else "aborted",
            txn.transactional_id,
            txn.producer_id,
            txn.epoch,
        )

    async def _write_markers(self, txn: Transaction, *, commit: bool) -> None:
        written: list[tuple[str, int, PartitionLog, int, int | None]] = []
        now_ms = int(time.time() * 1000)
        for topic, number in sorted(txn.partitions):
            log = self._log_for(topic, number)
            if log is None:
                continue  # deleted meanwhile
            records = control_batch(txn.producer_id, txn.epoch, commit=commit, timestamp=now_ms)
            _, last = log.append(records, parse_batches(records))
            first = self.partition(topic, number).ongoing.get(txn.producer_id)
            self._write(
                {
                    "k": "marker",
                    "t": topic,
                    "p": number,
                    "pid": txn.producer_id,
                    "first": first,
                    "last": last,
                    "commit": commit,
                }
            )
            written.append((topic, number, log, last, first))
        await asyncio.gather(self.sync(), *(log.commit(last) for _, _, log, last, _ in written))
        for topic, number, _, last, first in written:
            state = self.partition(topic, number)
            state.ongoing.pop(txn.producer_id, None)
            if not commit and first is not None:
                bisect.insort(state.aborted, (last, txn.producer_id, first))
            self._on_marker(topic, number, txn.producer_id, txn.epoch)
        if written:
            self._notify()

    # ------------------------------------------------------------------ recovery, expiry
    async def recover(self) -> None:
        """Finish what a stop left half-done: complete prepared transactions, abort
        ongoing ones (epoch bump: their producer is fenced), close stray ongoing entries."""
        for txn in list(self.transactions.values()):
            if txn.state in PREPARING:
                LOG.warning(
                    "completing the %s of %s after a restart", txn.state, txn.transactional_id
                )
                await self._complete(txn, commit=txn.state == PREPARE_COMMIT, bump=False)
            elif txn.state == ONGOING:
                LOG.warning(
                    "aborting the open transaction of %s after a restart", txn.transactional_id
                )
                await self._complete(txn, commit=False, bump=True)
        for (topic, number), state in list(self.partitions.items()):
            for pid in list(state.ongoing):
                owner = self.by_producer.get(pid)
                if owner is not None and owner.state == ONGOING:
                    continue
                epoch = owner.epoch if owner is not None else 0
                stray = Transaction("", pid, epoch, 0, partitions={(topic, number)})
                await self._write_markers(stray, commit=False)

    async def expire(self) -> None:
        now = time.monotonic()
        for txn in list(self.transactions.values()):
            if txn.state != ONGOING or self._lock(txn.transactional_id).locked():
                continue
            timed_out = now - txn.started > txn.timeout_ms / 1000
            orphaned = (
                self.orphan_seconds > 0
                and txn.orphaned_at is not None
                and now - txn.orphaned_at > self.orphan_seconds
            )
            if not (timed_out or orphaned):
                continue
            LOG.warning(
                "aborting the transaction of %s: %s",
                txn.transactional_id,
                "timed out" if timed_out else "its producer has no connection",
            )
            async with self._lock(txn.transactional_id):
                if txn.state == ONGOING:
                    await self._complete(txn, commit=False, bump=True)


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def control_batch(producer_id: int, epoch: int, *, commit: bool, timestamp: int) -> bytes:
    """A v2 record batch holding one COMMIT or ABORT control record."""
    key = struct.pack(">hh", 0, 1 if commit else 0)
    value = struct.pack(">hi", 0, 0)  # version, coordinator epoch
    body = (
        b"\0"  # record attributes
        + _varint(0)  # timestamp delta
        + _varint(0)  # offset delta
        + _varint(len(key))
        + key
        + _varint(len(value))
        + value
        + _varint(0)  # headers
    )
    record = _varint(len(body)) + body
    covered = (
        struct.pack(
            ">hiqqqhii",
            TRANSACTIONAL_FLAG | CONTROL_FLAG,
            0,  # last offset delta
            timestamp,
            timestamp,
            producer_id,
            epoch,
            -1,  # base sequence
            1,  # record count
        )
        + record
    )
    length = 4 + 1 + 4 + len(covered)  # leader epoch, magic, crc, rest
    return struct.pack(">qiibI", 0, length, -1, 2, crc32c(covered)) + covered
