"""A migrated ledger database per test: copied from a template migrated once per run."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.local.postgres import PostgresCluster
from ledger.db.connection import create_engine
from ledger.settlement import Settlement
from tests.integration.ledger.ledger_support import LedgerDatabase

_numbers = itertools.count(1)


@pytest.fixture
def ledger_database(
    postgres_cluster: PostgresCluster, ledger_template: str
) -> Iterator[LedgerDatabase]:
    database = postgres_cluster.create_database(
        f"ledger_{next(_numbers)}", template=ledger_template
    )
    yield LedgerDatabase(database)
    postgres_cluster.drop_database(database.name)


@pytest.fixture
async def ledger_engine(ledger_database: LedgerDatabase) -> AsyncIterator[AsyncEngine]:
    """An engine connected as the service's role."""
    engine = create_engine(ledger_database.service_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def settlement(ledger_engine: AsyncEngine) -> Settlement:
    return Settlement(ledger_engine)
