"""Fixtures for real components every test tree may need, started by the test run itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.kafka_broker import TansuBroker
from infra.local.redis import RedisServer


@pytest.fixture
def kafka_broker() -> Iterator[TansuBroker]:
    """A fresh Kafka-API broker (Tansu, in-memory storage) on a free loopback port."""
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty Redis (real redis-server, in memory) on a free loopback port."""
    with RedisServer() as server:
        yield server
