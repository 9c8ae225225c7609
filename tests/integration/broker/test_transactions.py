"""Kafka transactions on our broker (infra/broker, ADR 0014), driven by librdkafka through
confluent-kafka as Quix Streams drives it: a transactional producer and read_committed
consumers. Committed records are visible, aborted and open ones are not (the last stable
offset holds readers back), a newer producer of the same transactional id fences the older
one and aborts what it left open, offsets sent to a transaction reach the group only on
commit, and all of it survives a broker restart or crash on the same data directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from infra.local.kafka_broker import LocalBroker

TIMEOUT = 15.0


def transactional(broker: LocalBroker, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 30_000,
        }
    )
    producer.init_transactions(TIMEOUT)
    return producer


def produce(producer: Producer, topic: str, *values: bytes) -> None:
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(TIMEOUT) == 0


def flush_and_commit(producer: Producer) -> None:
    producer.flush(TIMEOUT)
    producer.commit_transaction(TIMEOUT)


def read(broker: LocalBroker, topic: str, isolation: str = "read_committed") -> list[bytes]:
    """Every record of partition 0 of `topic` the isolation level lets through, read up to
    the end the broker reports for it (the last stable offset for read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return values
                raise KafkaException(error)
            values.append(message.value())
    finally:
        consumer.close()
    raise TimeoutError(f"no end of {topic} within {TIMEOUT} s")


def end_offset(broker: LocalBroker, topic: str, isolation: str) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"offsets-{uuid.uuid4()}",
            "isolation.level": isolation,
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), TIMEOUT, cached=False)
    finally:
        consumer.close()
    return int(high)


def committed(broker: LocalBroker, group: str, topic: str) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": group,
            "isolation.level": "read_uncommitted",  # no require_stable: see pending as absent
        }
    )
    try:
        (partition,) = consumer.committed([TopicPartition(topic, 0)], TIMEOUT)
    finally:
        consumer.close()
    return int(partition.offset)


def test_committed_records_are_visible_and_aborted_ones_are_not(
    kafka_broker: LocalBroker,
) -> None:
    producer = transactional(kafka_broker, "txn-visibility")
    producer.begin_transaction()
    produce(producer, "txn.visibility", b"a1", b"a2")
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    produce(producer, "txn.visibility", b"b1", b"b2")
    producer.abort_transaction(TIMEOUT)
    producer.begin_transaction()
    produce(producer, "txn.visibility", b"c1")
    producer.commit_transaction(TIMEOUT)

    assert read(kafka_broker, "txn.visibility") == [b"a1", b"a2", b"c1"]
    # The aborted records are in the log: the broker's aborted index hides them.
    assert read(kafka_broker, "txn.visibility", "read_uncommitted") == [
        b"a1",
        b"a2",
        b"b1",
        b"b2",
        b"c1",
    ]
    # 5 records and 3 markers; nothing open, so the last stable offset is the end.
    assert end_offset(kafka_broker, "txn.visibility", "read_committed") == 8
    assert end_offset(kafka_broker, "txn.visibility", "read_uncommitted") == 8


def test_an_open_transaction_holds_read_committed_readers_at_its_first_offset(
    kafka_broker: LocalBroker,
) -> None:
    producer = transactional(kafka_broker, "txn-lso")
    producer.begin_transaction()
    produce(producer, "txn.lso", b"first")
    producer.commit_transaction(TIMEOUT)  # offsets 0 and 1 (marker)
    producer.begin_transaction()
    produce(producer, "txn.lso", b"open")  # offset 2
    plain = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    produce(plain, "txn.lso", b"plain")  # offset 3: not transactional, but after the LSO

    assert end_offset(kafka_broker, "txn.lso", "read_committed") == 2
    assert end_offset(kafka_broker, "txn.lso", "read_uncommitted") == 4
    assert read(kafka_broker, "txn.lso") == [b"first"]

    producer.commit_transaction(TIMEOUT)
    assert read(kafka_broker, "txn.lso") == [b"first", b"open", b"plain"]
    assert end_offset(kafka_broker, "txn.lso", "read_committed") == 5


def test_a_newer_producer_fences_the_older_and_aborts_its_open_transaction(
    kafka_broker: LocalBroker,
) -> None:
    older = transactional(kafka_broker, "txn-fence")
    older.begin_transaction()
    produce(older, "txn.fence", b"zombie")

    newer = transactional(kafka_broker, "txn-fence")  # aborts the older's transaction
    assert read(kafka_broker, "txn.fence") == []
    newer.begin_transaction()
    produce(newer, "txn.fence", b"newer")
    newer.commit_transaction(TIMEOUT)

    older.produce("txn.fence", value=b"zombie again", partition=0)
    with pytest.raises(KafkaException) as fenced:  # the produce or the commit: fatal
        flush_and_commit(older)
    assert fenced.value.args[0].code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    )
    assert read(kafka_broker, "txn.fence") == [b"newer"]


def test_offsets_sent_to_a_transaction_reach_the_group_only_on_commit(
    kafka_broker: LocalBroker,
) -> None:
    producer = transactional(kafka_broker, "txn-offsets")
    producer.begin_transaction()
    produce(producer, "txn.offsets", b"input")  # the topic exists
    producer.commit_transaction(TIMEOUT)
    group = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": "eos"})
    try:
        metadata = group.consumer_group_metadata()
        producer.begin_transaction()
        producer.send_offsets_to_transaction(
            [TopicPartition("txn.offsets", 0, 5)], metadata, TIMEOUT
        )
        producer.abort_transaction(TIMEOUT)
        assert committed(kafka_broker, "eos", "txn.offsets") < 0  # nothing committed

        producer.begin_transaction()
        producer.send_offsets_to_transaction(
            [TopicPartition("txn.offsets", 0, 7)], metadata, TIMEOUT
        )
        assert committed(kafka_broker, "eos", "txn.offsets") < 0  # pending, not applied
        producer.commit_transaction(TIMEOUT)
        assert committed(kafka_broker, "eos", "txn.offsets") == 7
    finally:
        group.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_transactions_survive_a_broker_restart_and_an_open_one_is_aborted(
    kafka_broker: LocalBroker, how: str
) -> None:
    older = transactional(kafka_broker, "txn-restart")
    older.begin_transaction()
    produce(older, "txn.restart", b"before")
    older.commit_transaction(TIMEOUT)
    older.begin_transaction()
    produce(older, "txn.restart", b"open")  # left open by the restart

    if how == "stop":
        kafka_broker.stop()
    else:
        kafka_broker.kill()
    kafka_broker.start()

    # The restart aborted the open transaction (markers written before serving): the LSO
    # is the end again and only the committed record is visible.
    assert read(kafka_broker, "txn.restart") == [b"before"]
    assert end_offset(kafka_broker, "txn.restart", "read_committed") == end_offset(
        kafka_broker, "txn.restart", "read_uncommitted"
    )
    with pytest.raises(KafkaException):
        older.commit_transaction(TIMEOUT)  # its epoch was bumped by the abort

    newer = transactional(kafka_broker, "txn-restart")  # the id is known after the restart
    newer.begin_transaction()
    produce(newer, "txn.restart", b"after")
    newer.commit_transaction(TIMEOUT)
    assert read(kafka_broker, "txn.restart") == [b"before", b"after"]


def wait_until_stable(broker: LocalBroker, topic: str, *, timeout_seconds: float) -> float:
    """Poll until no transaction holds `topic`'s LSO below its end; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_seconds:
        if end_offset(broker, topic, "read_committed") == end_offset(
            broker, topic, "read_uncommitted"
        ):
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"the LSO of {topic} stayed behind for {timeout_seconds} s")


ZOMBIE = """
import sys
from confluent_kafka import Producer
producer = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": "txn-orphan",
                     "transaction.timeout.ms": 60000})
producer.init_transactions(15)
producer.begin_transaction()
producer.produce("txn.orphan", value=b"never committed", partition=0)
assert producer.flush(15) == 0
print("open", flush=True)
sys.stdin.read()
"""


def test_the_open_transaction_of_a_killed_producer_is_aborted_without_its_timeout(
    kafka_broker: LocalBroker,
) -> None:
    zombie = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE, kafka_broker.bootstrap_servers],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert zombie.stdout is not None
        assert zombie.stdout.readline() == b"open\n"
        assert end_offset(kafka_broker, "txn.orphan", "read_committed") == 0  # held open
    finally:
        zombie.kill()  # SIGKILL: its sockets close, nothing else is sent
        zombie.wait()
    # Aborted once the producer has had no connection for 5 s, not after its 60 s timeout.
    wait_until_stable(kafka_broker, "txn.orphan", timeout_seconds=20)
    assert read(kafka_broker, "txn.orphan") == []
    assert read(kafka_broker, "txn.orphan", "read_uncommitted") == [b"never committed"]


def test_a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced(
    kafka_broker: LocalBroker,
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": kafka_broker.bootstrap_servers,
            "transactional.id": "txn-timeout",
            "transaction.timeout.ms": 2000,
        }
    )
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    produce(producer, "txn.timeout", b"too slow")
    assert end_offset(kafka_broker, "txn.timeout", "read_committed") == 0
    wait_until_stable(kafka_broker, "txn.timeout", timeout_seconds=15)  # the producer is alive
    with pytest.raises(KafkaException):
        producer.commit_transaction(TIMEOUT)
    assert read(kafka_broker, "txn.timeout") == []


def test_a_commit_prepared_before_a_crash_is_completed_at_start(
    kafka_broker: LocalBroker,
) -> None:
    producer = transactional(kafka_broker, "txn-prepared")
    producer.begin_transaction()
    produce(producer, "txn.prepared", b"committed")
    producer.commit_transaction(TIMEOUT)
    end = end_offset(kafka_broker, "txn.prepared", "read_uncommitted")
    kafka_broker.kill()
    # A crash right after EndTxn(commit) made PrepareCommit durable, before the markers and
    # the offsets: the log holds the prepared record last.
    assert kafka_broker.data_dir is not None
    path = kafka_broker.data_dir / "transactions.log"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    last = [r for r in records if r["k"] == "txn" and r["tid"] == "txn-prepared"][-1]
    prepared = {
        **last,
        "state": "PrepareCommit",
        "partitions": [["txn.prepared", 0]],
        "groups": ["prepared-group"],
        "offsets": [["prepared-group", "txn.prepared", 0, 42, ""]],
    }
    with path.open("a") as file:
        file.write(json.dumps(prepared) + "\n")
    kafka_broker.start()

    assert committed(kafka_broker, "prepared-group", "txn.prepared") == 42
    assert end_offset(kafka_broker, "txn.prepared", "read_uncommitted") == end + 1  # COMMIT
    assert read(kafka_broker, "txn.prepared") == [b"committed"]
