"""A Kafka-API broker whose data survives its own restart: the repository's broker
(infra/broker), which keeps its segment logs on disk in a directory that outlives the
process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.kafka_broker import LocalBroker


@pytest.fixture
def durable_kafka_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with LocalBroker(data_dir=tmp_path / "broker") as broker:
        yield broker
