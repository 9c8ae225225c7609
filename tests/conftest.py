"""Fixtures for real components every test tree may need, started by the test run itself."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from infra.local.kafka_broker import LocalBroker
from infra.local.postgres import PostgresCluster, PostgresDatabase
from infra.local.redis import RedisServer
from ledger.db.migrate import SERVICE_ROLE, upgrade


@pytest.fixture
def kafka_broker() -> Iterator[LocalBroker]:
    """A fresh Kafka-API broker (infra/broker, data in a temporary directory) on a free
    loopback port."""
    with LocalBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole run (initdb + pg_ctl in a temp dir).

    Not durable (fsync off): tests crash clients, not the machine.
    """
    with PostgresCluster(durable=False) as cluster:
        yield cluster


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres(postgres_cluster: PostgresCluster) -> Iterator[PostgresDatabase]:
    """A fresh, empty database on the session's cluster, dropped after the test."""
    database = postgres_cluster.create_database(f"test_{next(_database_numbers)}")
    yield database
    postgres_cluster.drop_database(database.name)


LEDGER_TEMPLATE = "ledger_template"
LEDGER_SERVICE_LOGIN = "ledger_app"


@pytest.fixture(scope="session")
def ledger_template(postgres_cluster: PostgresCluster) -> str:
    """A database with the ledger's migrations applied, to copy per test (CREATE ... TEMPLATE),
    and the service's login role `ledger_app` (a member of `ledger_service` only)."""
    database = postgres_cluster.create_database(LEDGER_TEMPLATE)
    upgrade(database.url())
    postgres_cluster.ensure_login_role(LEDGER_SERVICE_LOGIN)
    postgres_cluster.execute_text(f"GRANT {SERVICE_ROLE} TO {LEDGER_SERVICE_LOGIN}")
    return LEDGER_TEMPLATE


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty Redis (real redis-server, in memory) on a free loopback port."""
    with RedisServer() as server:
        yield server
