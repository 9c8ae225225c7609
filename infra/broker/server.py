"""The broker: an asyncio TCP server answering the Kafka protocol for one node.

Requests of one connection are decoded in order and handled concurrently (a produce does
its append before its first await, so appends keep the connection's order); responses
are written in request order. acks=0 produces get no response, as in Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import itertools
import json
import logging
import os
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.broker.groups import GroupCoordinator, OffsetStore
from infra.broker.protocol import (
    API_VERSIONS,
    SUPPORTED,
    ProtocolError,
    Request,
    decode_request,
    encode_response,
)
from infra.broker.storage import (
    CorruptBatchError,
    LogConfig,
    PartitionLog,
    Syncer,
    fsync_directory,
    parse_batches,
)
from infra.broker.transactions import PRODUCER_FENCED, TransactionCoordinator

LOG = logging.getLogger("infra.broker")

NODE_ID = 1
CLUSTER_ID = "exchange-local"
MAX_FRAME = 100 * 1024 * 1024
MAX_IN_FLIGHT = 64

NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_CONFIG = 40
INVALID_REQUEST = 42
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
KAFKA_STORAGE_ERROR = 56
UNSTABLE_OFFSET_COMMIT = 88

READ_COMMITTED = 1
EARLIEST = -2
LATEST = -1

# Topic configs this broker applies; others are stored and described as given.
DEFAULT_CONFIGS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 60 * 60 * 1000),
    "retention.bytes": "-1",
    "segment.bytes": str(16 * 1024 * 1024),
    "segment.ms": str(60 * 60 * 1000),
    "max.message.bytes": str(8 * 1024 * 1024),
}
NUMERIC_CONFIGS = ("retention.ms", "retention.bytes", "segment.bytes", "segment.ms")
ZERO = datetime.timedelta(0)


@dataclass
class ProducerState:
    """The last batches of one idempotent producer on one partition (Kafka keeps 5)."""

    epoch: int
    last_sequence: int
    recent: deque[tuple[int, int, int]] = field(default_factory=lambda: deque(maxlen=5))


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, str]
    partitions: list[PartitionLog]
    producers: list[dict[int, ProducerState]] = field(default_factory=list)


class Broker:
    def __init__(
        self,
        data_dir: Path,
        *,
        host: str,
        port: int,
        advertised_host: str | None = None,
        auto_create_topics: bool = True,
        default_partitions: int = 1,
        retention_check_seconds: float = 5.0,
        orphan_transaction_seconds: float = 5.0,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.advertised_host = advertised_host or host
        self.auto_create_topics = auto_create_topics
        self.default_partitions = default_partitions
        self.retention_check_seconds = retention_check_seconds
        self.syncer = Syncer()
        self.topics: dict[str, Topic] = {}
        self.groups = GroupCoordinator()
        self._data_arrived = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self._background: list[asyncio.Task[None]] = []
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "topics").mkdir(exist_ok=True)
        self._load_state()
        self.offsets = OffsetStore(data_dir / "offsets.log", self.syncer)
        self.transactions = TransactionCoordinator(
            data_dir / "transactions.log",
            self.syncer,
            log_for=self._partition,
            allocate_producer_id=self._allocate_producer_id,
            commit_offsets=self.offsets.commit,
            on_marker=self._on_marker,
            notify=self._notify_data,
            orphan_seconds=orphan_transaction_seconds,
        )
        self.transactions.migrate(self._legacy_transactional)
        self._connections = itertools.count(1)
        self._handlers: dict[int, Callable[[Request], Awaitable[dict[str, Any] | None]]] = {
            0: self._produce,
            1: self._fetch,
            2: self._list_offsets,
            3: self._metadata,
            8: self._offset_commit,
            9: self._offset_fetch,
            10: self._find_coordinator,
            11: self._join_group,
            12: self._heartbeat,
            13: self._leave_group,
            14: self._sync_group,
            15: self._describe_groups,
            16: self._list_groups,
            18: self._api_versions,
            19: self._create_topics,
            20: self._delete_topics,
            22: self._init_producer_id,
            24: self._add_partitions_to_txn,
            25: self._add_offsets_to_txn,
            26: self._end_txn,
            28: self._txn_offset_commit,
            32: self._describe_configs,
        }

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        state_path = self.data_dir / "state.json"
        state: dict[str, Any] = {"topics": {}, "next_producer_id": 1000}
        if state_path.exists():
            state = json.loads(state_path.read_text())
        self.next_producer_id: int = state["next_producer_id"]
        # Transactional ids live in transactions.log now; older data dirs had them here.
        self._legacy_transactional: dict[str, list[int]] = state.get("transactional", {})
        for name, topic in state["topics"].items():
            self._open_topic(name, uuid.UUID(topic["id"]), topic["partitions"], topic["configs"])

    def _save_state(self) -> None:
        state = {
            "topics": {
                name: {
                    "id": str(topic.topic_id),
                    "partitions": len(topic.partitions),
                    "configs": topic.configs,
                }
                for name, topic in self.topics.items()
            },
            # Reserve ids ahead, so a crash never hands out an id twice.
            "next_producer_id": self.next_producer_id,
        }
        path = self.data_dir / "state.json"
        temporary = path.with_suffix(".tmp")
        with temporary.open("w") as file:
            json.dump(state, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
        fsync_directory(self.data_dir)

    def _open_topic(
        self, name: str, topic_id: uuid.UUID, partitions: int, configs: dict[str, str]
    ) -> Topic:
        config = LogConfig.from_topic(configs)
        logs = [
            PartitionLog(self.data_dir / "topics" / name / str(number), config, self.syncer)
            for number in range(partitions)
        ]
        # Idempotent producers' last batches, rebuilt from the log: a retry after a restart
        # is still recognised as a duplicate.
        producers = [
            {
                pid: ProducerState(epoch, recent[-1][1], deque(recent, maxlen=5))
                for pid, (epoch, recent) in log.recovered_producers.items()
            }
            for log in logs
        ]
        topic = Topic(name, topic_id, configs, logs, producers)
        self.topics[name] = topic
        return topic

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        topic = self._open_topic(name, uuid.uuid4(), partitions, configs)
        self._save_state()
        LOG.info("created topic %s with %d partitions %s", name, partitions, configs)
        return topic

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.transactions.recover()  # before serving: no client sees a half-done txn
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self._background = [
            asyncio.create_task(self._retention_loop()),
            asyncio.create_task(self._expiry_loop()),
        ]
        LOG.info("listening on %s:%d, data in %s", self.host, self.port, self.data_dir)

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        if self._server is not None:
            self._server.close()
        for topic in self.topics.values():
            for log in topic.partitions:
                log.close()
        self.offsets.close()
        self.transactions.close()

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retention_check_seconds)
            now_ms = int(time.time() * 1000)
            for topic in list(self.topics.values()):
                if "delete" not in topic.configs.get("cleanup.policy", "delete"):
                    continue
                for number, log in enumerate(topic.partitions):
                    try:
                        log.roll_if_due()
                        deleted = log.apply_retention(now_ms)
                    except OSError as error:
                        LOG.error("ERROR retention of %s-%d failed: %s", topic.name, number, error)
                        continue
                    if deleted:
                        self.transactions.prune(topic.name, number, log.log_start_offset)
                        LOG.info(
                            "retention deleted %d segments of %s-%d, log start offset %d",
                            deleted,
                            topic.name,
                            number,
                            log.log_start_offset,
                        )

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.groups.expire()
            try:
                await self.transactions.expire()
            except Exception:
                LOG.exception("ERROR aborting an expired transaction failed")

    # ------------------------------------------------------------------ connections
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        responses: asyncio.Queue[asyncio.Task[bytes | None] | None] = asyncio.Queue(MAX_IN_FLIGHT)
        sender = asyncio.create_task(self._send(responses, writer))
        connection = next(self._connections)
        try:
            while True:
                size_bytes = await reader.readexactly(4)
                (size,) = struct.unpack(">i", size_bytes)
                if not 0 < size <= MAX_FRAME:
                    raise ProtocolError(f"frame size {size}")
                frame = await reader.readexactly(size)
                request = dataclasses.replace(decode_request(frame), connection=connection)
                await responses.put(asyncio.create_task(self._handle(request)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as error:
            LOG.warning("closing connection: %s", error)
        except Exception:
            LOG.exception("ERROR decoding a request")
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                responses.put_nowait(None)
            await sender
            writer.close()
            self.transactions.connection_closed(connection)

    async def _send(
        self,
        responses: asyncio.Queue[asyncio.Task[bytes | None] | None],
        writer: asyncio.StreamWriter,
    ) -> None:
        while True:
            task = await responses.get()
            if task is None:
                return
            try:
                data = await task
            except Exception:
                LOG.exception("ERROR handling a request")
                writer.close()
                return
            if data is None:
                continue
            try:
                writer.write(data)
                await writer.drain()
            except ConnectionError:
                return

    async def _handle(self, request: Request) -> bytes | None:
        body = await self._handlers[request.api_key](request)
        if body is None:
            return None
        return encode_response(request, body)

    # ------------------------------------------------------------------ topics
    def _partition(self, topic: str, partition: int) -> PartitionLog | None:
        known = self.topics.get(topic)
        if known is None or not 0 <= partition < len(known.partitions):
            return None
        return known.partitions[partition]

    async def _api_versions(self, request: Request) -> dict[str, Any]:
        keys = [
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in SUPPORTED.items()
        ]
        error = UNSUPPORTED_VERSION if request.api_version > SUPPORTED[API_VERSIONS][1] else NONE
        return {"error_code": error, "api_keys": keys, "throttle_time": ZERO}

    async def _metadata(self, request: Request) -> dict[str, Any]:
        body = request.body
        allow_create = getattr(body, "allow_auto_topic_creation", True)
        if body.topics is None:
            names = list(self.topics)
        else:
            names = [t.name for t in body.topics if t.name is not None]
        topics = []
        for name in names:
            topic = self.topics.get(name)
            if topic is None and allow_create and self.auto_create_topics:
                topic = self.create_topic(name, self.default_partitions, {})
            if topic is None:
                topics.append(
                    {
                        "error_code": UNKNOWN_TOPIC_OR_PARTITION,
                        "name": name,
                        "topic_id": uuid.UUID(int=0),
                        "partitions": [],
                    }
                )
                continue
            topics.append(
                {
                    "error_code": NONE,
                    "name": name,
                    "topic_id": topic.topic_id,
                    "is_internal": False,
                    "partitions": [
                        {
                            "error_code": NONE,
                            "partition_index": number,
                            "leader_id": NODE_ID,
                            "leader_epoch": 0,
                            "replica_nodes": [NODE_ID],
                            "isr_nodes": [NODE_ID],
                            "offline_replicas": [],
                        }
                        for number in range(len(topic.partitions))
                    ],
                }
            )
        return {
            "throttle_time": ZERO,
            "brokers": [{"node_id": NODE_ID, "host": self.advertised_host, "port": self.port}],
            "cluster_id": CLUSTER_ID,
            "controller_id": NODE_ID,
            "topics": topics,
        }

    async def _create_topics(self, request: Request) -> dict[str, Any]:
        results = []
        for item in request.body.topics:
            configs = {c.name: c.value for c in item.configs if c.value is not None}
            partitions = item.num_partitions if item.num_partitions > 0 else self.default_partitions
            result: dict[str, Any] = {
                "name": item.name,
                "error_code": NONE,
                "error_message": None,
                "num_partitions": partitions,
                "replication_factor": 1,
            }
            bad = [key for key in NUMERIC_CONFIGS if key in configs and not _is_int(configs[key])]
            if item.name in self.topics:
                result.update(
                    error_code=TOPIC_ALREADY_EXISTS,
                    error_message=f"Topic '{item.name}' already exists.",
                )
            elif bad:
                result.update(error_code=INVALID_CONFIG, error_message=f"not a number: {bad}")
            elif partitions > 10_000:
                result.update(error_code=INVALID_PARTITIONS, error_message="too many partitions")
            elif not request.body.validate_only:
                self.create_topic(item.name, partitions, configs)
            if result["error_code"] == NONE:
                merged = {**DEFAULT_CONFIGS, **configs}
                result["configs"] = [
                    {
                        "name": key,
                        "value": value,
                        "read_only": False,
                        "config_source": 1 if key in configs else 5,
                        "is_sensitive": False,
                    }
                    for key, value in merged.items()
                ]
            results.append(result)
        return {"throttle_time": ZERO, "topics": results}

    async def _delete_topics(self, request: Request) -> dict[str, Any]:
        responses = []
        for name in request.body.topic_names:
            topic = self.topics.pop(name, None)
            if topic is None:
                responses.append({"name": name, "error_code": UNKNOWN_TOPIC_OR_PARTITION})
                continue
            for log in topic.partitions:
                log.delete()
            (self.data_dir / "topics" / name).rmdir()
            self.transactions.forget_topic(name)
            self._save_state()
            responses.append({"name": name, "error_code": NONE})
        return {"throttle_time": ZERO, "responses": responses}

    async def _describe_configs(self, request: Request) -> dict[str, Any]:
        results = []
        for resource in request.body.resources:
            result: dict[str, Any] = {
                "error_code": NONE,
                "error_message": None,
                "resource_type": resource.resource_type,
                "resource_name": resource.resource_name,
                "configs": [],
            }
            if resource.resource_type == 2:  # topic
                topic = self.topics.get(resource.resource_name)
                if topic is None:
                    result.update(
                        error_code=UNKNOWN_TOPIC_OR_PARTITION, error_message="unknown topic"
                    )
                else:
                    merged = {**DEFAULT_CONFIGS, **topic.configs}
                    wanted = resource.configuration_keys
                    result["configs"] = [
                        {
                            "name": key,
                            "value": value,
                            "read_only": False,
                            "config_source": 1 if key in topic.configs else 5,
                            "is_sensitive": False,
                        }
                        for key, value in merged.items()
                        if wanted is None or key in wanted
                    ]
            results.append(result)
        return {"throttle_time": ZERO, "results": results}

    # ------------------------------------------------------------------ produce
    async def _produce(self, request: Request) -> dict[str, Any] | None:
        body = request.body
        pending: list[tuple[dict[str, Any], PartitionLog, int]] = []
        sync_transactions = False
        responses = []
        for topic_data in body.topic_data:
            partitions = []
            for data in topic_data.partition_data:
                result, appended, wrote = self._append(topic_data.name, data, request.connection)
                partitions.append(result)
                sync_transactions |= wrote
                if appended is not None:
                    pending.append((result, *appended))
            responses.append({"name": topic_data.name, "partition_responses": partitions})
        waits: list[Awaitable[None]] = [log.commit(last) for _, log, last in pending]
        if sync_transactions:
            waits.append(self.transactions.sync())
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, OSError):
                raise outcome
        failed_transactions = sync_transactions and outcomes[-1] is not None
        for (result, _, _), outcome in zip(pending, outcomes, strict=False):
            if outcome is not None or failed_transactions:
                result["error_code"] = KAFKA_STORAGE_ERROR
        if pending:
            self._notify_data()
        if body.acks == 0:
            return None
        return {"responses": responses, "throttle_time": ZERO}

    def _append(  # noqa: PLR0911 - one return per refusal
        self, topic: str, data: Any, connection: int
    ) -> tuple[dict[str, Any], tuple[PartitionLog, int] | None, bool]:
        """Validate and append one partition's records: (result, (log, last offset) to
        commit, whether the transaction log was written)."""
        result: dict[str, Any] = {
            "index": data.index,
            "error_code": NONE,
            "base_offset": -1,
            "log_append_time": None,
            "log_start_offset": -1,
        }
        log = self._partition(topic, data.index)
        if log is None:
            result["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
            return result, None, False
        result["log_start_offset"] = log.log_start_offset
        records = bytes(data.records or b"")
        try:
            batches = parse_batches(records)
        except CorruptBatchError as error:
            LOG.warning("refused a produce to %s-%d: %s", topic, data.index, error)
            result["error_code"] = CORRUPT_MESSAGE
            return result, None, False
        if not batches:
            return result, None, False
        producers = self.topics[topic].producers[data.index]
        code = self.transactions.check_produce(topic, data.index, batches, connection)
        duplicate = None
        if code == NONE:
            code, duplicate = _check_sequences(producers, batches)
        if code != NONE:
            result["error_code"] = code
            return result, None, False
        if duplicate is not None:
            result["base_offset"] = duplicate
            return result, None, False
        try:
            first, last = log.append(records, batches)
        except OSError as error:
            LOG.error("ERROR append to %s-%d failed: %s", topic, data.index, error)
            result["error_code"] = KAFKA_STORAGE_ERROR
            return result, None, False
        _record_sequences(producers, batches, first)
        wrote = self.transactions.record_produce(topic, data.index, batches, first)
        result["base_offset"] = first
        return result, (log, last), wrote

    def _notify_data(self) -> None:
        self._data_arrived.set()
        self._data_arrived = asyncio.Event()

    # ------------------------------------------------------------------ fetch
    async def _fetch(self, request: Request) -> dict[str, Any]:
        body = request.body
        deadline = time.monotonic() + body.max_wait.total_seconds()
        while True:
            arrived = self._data_arrived
            responses, total = self._read_fetch(body)
            remaining = deadline - time.monotonic()
            if total >= body.min_bytes or remaining <= 0 or _has_errors(responses):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)
        return {"throttle_time": ZERO, "error_code": NONE, "session_id": 0, "responses": responses}

    def _read_fetch(self, body: Any) -> tuple[list[dict[str, Any]], int]:
        budget = body.max_bytes if body.max_bytes > 0 else MAX_FRAME
        total = 0
        responses = []
        for topic in body.topics:
            partitions = []
            for wanted in topic.partitions:
                log = self._partition(topic.topic, wanted.partition)
                result: dict[str, Any] = {
                    "partition_index": wanted.partition,
                    "error_code": NONE,
                    "high_watermark": -1,
                    "last_stable_offset": -1,
                    "log_start_offset": -1,
                    "aborted_transactions": [] if body.isolation_level == READ_COMMITTED else None,
                    "preferred_read_replica": -1,
                    "records": b"",
                }
                partitions.append(result)
                if log is None:
                    result["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
                    continue
                stable = self.transactions.last_stable_offset(
                    topic.topic, wanted.partition, log.high_watermark
                )
                result["high_watermark"] = log.high_watermark
                result["last_stable_offset"] = stable
                result["log_start_offset"] = log.log_start_offset
                offset = wanted.fetch_offset
                if offset < log.log_start_offset or offset > log.high_watermark:
                    result["error_code"] = OFFSET_OUT_OF_RANGE
                    continue
                limit = min(wanted.partition_max_bytes, max(budget - total, 0))
                if limit <= 0 and total > 0:
                    continue
                records = log.read(offset, max(limit, 1))
                if body.isolation_level == READ_COMMITTED:
                    records, end = _before(records, stable)
                    if records:
                        result["aborted_transactions"] = [
                            {"producer_id": pid, "first_offset": first}
                            for pid, first in self.transactions.aborted(
                                topic.topic, wanted.partition, offset, end
                            )
                        ]
                result["records"] = records
                total += len(records)
            responses.append({"topic": topic.topic, "partitions": partitions})
        return responses, total

    async def _list_offsets(self, request: Request) -> dict[str, Any]:
        topics = []
        for topic in request.body.topics:
            partitions = []
            for wanted in topic.partitions:
                result: dict[str, Any] = {
                    "partition_index": wanted.partition_index,
                    "error_code": NONE,
                    "timestamp": -1,
                    "offset": -1,
                    "leader_epoch": 0,
                }
                partitions.append(result)
                log = self._partition(topic.name, wanted.partition_index)
                if log is None:
                    result["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
                elif wanted.timestamp == EARLIEST:
                    result["offset"] = log.log_start_offset
                elif wanted.timestamp == LATEST:
                    result["offset"] = log.high_watermark
                    if getattr(request.body, "isolation_level", 0) == READ_COMMITTED:
                        result["offset"] = self.transactions.last_stable_offset(
                            topic.name, wanted.partition_index, log.high_watermark
                        )
                else:
                    found = log.offset_for_timestamp(wanted.timestamp)
                    if found is not None:
                        result["offset"], result["timestamp"] = found
            topics.append({"name": topic.name, "partitions": partitions})
        return {"throttle_time": ZERO, "topics": topics}

    # ------------------------------------------------------------------ producers
    def _allocate_producer_id(self) -> int:
        producer_id = self.next_producer_id
        self.next_producer_id += 1
        self._save_state()
        return producer_id

    def _on_marker(self, topic: str, partition: int, producer_id: int, epoch: int) -> None:
        """A marker of `epoch` fences older epochs of the producer on the partition."""
        known = self.topics.get(topic)
        if known is None or partition >= len(known.producers):
            return
        state = known.producers[partition].get(producer_id)
        if state is None or state.epoch < epoch:
            known.producers[partition][producer_id] = ProducerState(epoch, -1)

    async def _init_producer_id(self, request: Request) -> dict[str, Any]:
        body = request.body
        error, producer_id, epoch = NONE, -1, -1
        if body.transactional_id is None:
            producer_id, epoch = self._allocate_producer_id(), 0
        else:
            error, producer_id, epoch = await self.transactions.init_producer_id(
                body.transactional_id,
                int(body.transaction_timeout.total_seconds() * 1000),
                getattr(body, "producer_id", -1),
                getattr(body, "producer_epoch", -1),
                request.connection,
            )
            if error == PRODUCER_FENCED and request.api_version < 4:
                error = INVALID_PRODUCER_EPOCH
        return {
            "throttle_time": ZERO,
            "error_code": error,
            "producer_id": producer_id,
            "producer_epoch": epoch,
        }

    # ------------------------------------------------------------------ transactions
    async def _add_partitions_to_txn(self, request: Request) -> dict[str, Any]:
        body = request.body
        wanted = [
            (topic.name, int(number))
            for topic in body.v3_and_below_topics
            for number in topic.partitions
        ]
        codes = await self.transactions.add_partitions(
            body.v3_and_below_transactional_id,
            body.v3_and_below_producer_id,
            body.v3_and_below_producer_epoch,
            wanted,
            request.connection,
        )
        results: dict[str, list[dict[str, Any]]] = {}
        for (name, number), code in codes.items():
            results.setdefault(name, []).append(
                {
                    "partition_index": number,
                    "partition_error_code": _fenced(code, request.api_version),
                }
            )
        return {
            "throttle_time": ZERO,
            "results_by_topic_v3_and_below": [
                {"name": name, "results_by_partition": partitions}
                for name, partitions in results.items()
            ],
        }

    async def _add_offsets_to_txn(self, request: Request) -> dict[str, Any]:
        body = request.body
        code = await self.transactions.add_offsets(
            body.transactional_id,
            body.producer_id,
            body.producer_epoch,
            body.group_id,
            request.connection,
        )
        return {"throttle_time": ZERO, "error_code": _fenced(code, request.api_version)}

    async def _end_txn(self, request: Request) -> dict[str, Any]:
        body = request.body
        code = await self.transactions.end_txn(
            body.transactional_id,
            body.producer_id,
            body.producer_epoch,
            commit=body.committed,
            connection=request.connection,
        )
        return {"throttle_time": ZERO, "error_code": _fenced(code, request.api_version)}

    async def _txn_offset_commit(self, request: Request) -> dict[str, Any]:
        body = request.body
        code = self.groups.check_commit(
            body.group_id, getattr(body, "member_id", ""), getattr(body, "generation_id", -1)
        )
        entries = [
            (topic.name, p.partition_index, p.committed_offset, p.committed_metadata)
            for topic in body.topics
            for p in topic.partitions
        ]
        if code == NONE:
            code = self.transactions.txn_offset_commit(
                body.transactional_id,
                body.producer_id,
                body.producer_epoch,
                body.group_id,
                entries,
                connection=request.connection,
            )
        code = _fenced(code, request.api_version)
        return {
            "throttle_time": ZERO,
            "topics": [
                {
                    "name": topic.name,
                    "partitions": [
                        {"partition_index": p.partition_index, "error_code": code}
                        for p in topic.partitions
                    ],
                }
                for topic in body.topics
            ],
        }

    # ------------------------------------------------------------------ groups
    async def _find_coordinator(self, _request: Request) -> dict[str, Any]:
        return {
            "throttle_time": ZERO,
            "error_code": NONE,
            "error_message": None,
            "node_id": NODE_ID,
            "host": self.advertised_host,
            "port": self.port,
        }

    async def _join_group(self, request: Request) -> dict[str, Any]:
        body = request.body
        session = body.session_timeout.total_seconds() * 1000
        rebalance = getattr(body, "rebalance_timeout", body.session_timeout)
        result = await self.groups.join(
            group_id=body.group_id,
            member_id=body.member_id,
            client_id=request.client_id or "",
            group_instance_id=getattr(body, "group_instance_id", None),
            session_timeout_ms=int(session),
            rebalance_timeout_ms=int(rebalance.total_seconds() * 1000),
            protocol_type=body.protocol_type,
            protocols=[(p.name, bytes(p.metadata)) for p in body.protocols],
        )
        return {
            "throttle_time": ZERO,
            "error_code": result.error_code,
            "generation_id": result.generation_id,
            "protocol_type": result.protocol_type,
            "protocol_name": result.protocol_name or "",
            "leader": result.leader,
            "member_id": result.member_id,
            "members": [
                {"member_id": member_id, "group_instance_id": instance, "metadata": metadata}
                for member_id, instance, metadata in result.members
            ],
        }

    async def _sync_group(self, request: Request) -> dict[str, Any]:
        body = request.body
        code, assignment = await self.groups.sync(
            group_id=body.group_id,
            member_id=body.member_id,
            generation_id=body.generation_id,
            assignments={a.member_id: bytes(a.assignment) for a in body.assignments},
        )
        group = self.groups.group(body.group_id)
        return {
            "throttle_time": ZERO,
            "error_code": code,
            "protocol_type": group.protocol_type,
            "protocol_name": group.protocol_name,
            "assignment": assignment,
        }

    async def _heartbeat(self, request: Request) -> dict[str, Any]:
        body = request.body
        code = self.groups.heartbeat(
            group_id=body.group_id, member_id=body.member_id, generation_id=body.generation_id
        )
        return {"throttle_time": ZERO, "error_code": code}

    async def _leave_group(self, request: Request) -> dict[str, Any]:
        body = request.body
        if hasattr(body, "members"):
            member_ids = [m.member_id for m in body.members]
        else:
            member_ids = [body.member_id]
        results = self.groups.leave(group_id=body.group_id, member_ids=member_ids)
        return {
            "throttle_time": ZERO,
            "error_code": NONE,
            "members": [
                {"member_id": member_id, "group_instance_id": None, "error_code": code}
                for member_id, code in results.items()
            ],
        }

    async def _describe_groups(self, request: Request) -> dict[str, Any]:
        groups = []
        for group_id in request.body.groups:
            group = self.groups.groups.get(group_id)
            protocol = (group.protocol_name or "") if group else ""
            groups.append(
                {
                    "error_code": NONE,
                    "group_id": group_id,
                    "group_state": group.state if group else "Dead",
                    "protocol_type": (group.protocol_type or "") if group else "",
                    "protocol_data": (group.protocol_name or "") if group else "",
                    "members": [
                        {
                            "member_id": member.member_id,
                            "group_instance_id": member.group_instance_id,
                            "client_id": member.client_id,
                            "client_host": "",
                            "member_metadata": dict(member.protocols).get(protocol, b""),
                            "member_assignment": member.assignment,
                        }
                        for member in (group.members.values() if group else [])
                    ],
                }
            )
        return {"throttle_time": ZERO, "groups": groups}

    async def _list_groups(self, _request: Request) -> dict[str, Any]:
        return {
            "throttle_time": ZERO,
            "error_code": NONE,
            "groups": [
                {
                    "group_id": group.group_id,
                    "protocol_type": group.protocol_type or "",
                    "group_state": group.state,
                }
                for group in self.groups.groups.values()
            ],
        }

    async def _offset_commit(self, request: Request) -> dict[str, Any]:
        body = request.body
        code = self.groups.check_commit(
            body.group_id, body.member_id, body.generation_id_or_member_epoch
        )
        entries = []
        topics = []
        for topic in body.topics:
            partitions = []
            for partition in topic.partitions:
                error = code
                if error == NONE and self._partition(topic.name, partition.partition_index) is None:
                    error = UNKNOWN_TOPIC_OR_PARTITION
                if error == NONE:
                    entries.append(
                        (
                            body.group_id,
                            topic.name,
                            partition.partition_index,
                            partition.committed_offset,
                            partition.committed_metadata,
                        )
                    )
                partitions.append(
                    {"partition_index": partition.partition_index, "error_code": error}
                )
            topics.append({"name": topic.name, "partitions": partitions})
        if entries:
            await self.offsets.commit(entries)
        return {"throttle_time": ZERO, "topics": topics}

    async def _offset_fetch(self, request: Request) -> dict[str, Any]:
        body = request.body
        if body.topics is None:
            wanted = self.offsets.committed_partitions(body.group_id)
        else:
            wanted = {t.name: list(t.partition_indexes) for t in body.topics}
        require_stable = getattr(body, "require_stable", False)
        topics = []
        for name, partitions in wanted.items():
            results = []
            for partition in partitions:
                found = self.offsets.fetch(body.group_id, name, partition)
                offset, metadata = found if found is not None else (-1, "")
                error = NONE
                if require_stable and self.transactions.unstable(body.group_id, name, partition):
                    error, offset = UNSTABLE_OFFSET_COMMIT, -1
                results.append(
                    {
                        "partition_index": partition,
                        "committed_offset": offset,
                        "committed_leader_epoch": -1,
                        "metadata": metadata,
                        "error_code": error,
                    }
                )
            topics.append({"name": name, "partitions": results})
        return {"throttle_time": ZERO, "topics": topics, "error_code": NONE}


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _fenced(code: int, api_version: int) -> int:
    """PRODUCER_FENCED as clients of versions before KIP-588 (v2 of the txn APIs) know it."""
    return INVALID_PRODUCER_EPOCH if code == PRODUCER_FENCED and api_version < 2 else code


def _before(records: bytes, limit: int) -> tuple[bytes, int]:
    """The whole batches of `records` that start below offset `limit`, and the offset
    after the last of them."""
    position = 0
    end = -1
    while position + 61 <= len(records):
        base, length = struct.unpack_from(">qi", records, position)
        if base >= limit:
            break
        (last_delta,) = struct.unpack_from(">i", records, position + 23)
        end = base + last_delta + 1
        position += length + 12
    return records[:position], end


def _has_errors(responses: list[dict[str, Any]]) -> bool:
    return any(p["error_code"] != NONE for t in responses for p in t["partitions"])


def _check_sequences(
    producers: dict[int, ProducerState], batches: list[tuple[int, Any]]
) -> tuple[int, int | None]:
    """(error, offset of a duplicate) for the idempotent batches of a produce."""
    for _, info in batches:
        if info.producer_id < 0 or info.base_sequence < 0:
            continue
        state = producers.get(info.producer_id)
        if state is None:
            continue  # unknown producer (new, or known before a restart): accept
        if info.producer_epoch < state.epoch:
            return INVALID_PRODUCER_EPOCH, None
        if info.producer_epoch > state.epoch:
            if info.base_sequence != 0:
                return OUT_OF_ORDER_SEQUENCE_NUMBER, None
            continue
        for base, last, offset in state.recent:
            if base == info.base_sequence and last == info.base_sequence + info.record_count - 1:
                return NONE, offset
        if info.base_sequence != state.last_sequence + 1:
            return OUT_OF_ORDER_SEQUENCE_NUMBER, None
    return NONE, None


def _record_sequences(
    producers: dict[int, ProducerState], batches: list[tuple[int, Any]], first_offset: int
) -> None:
    offset = first_offset
    for _, info in batches:
        if info.producer_id >= 0 and info.base_sequence >= 0:
            state = producers.get(info.producer_id)
            if state is None or info.producer_epoch > state.epoch:
                state = ProducerState(info.producer_epoch, -1)
                producers[info.producer_id] = state
            last = info.base_sequence + info.record_count - 1
            state.last_sequence = last
            state.recent.append((info.base_sequence, last, offset))
        offset += info.record_count
