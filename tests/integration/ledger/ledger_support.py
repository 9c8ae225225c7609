"""Shared by the ledger's integration tests: the database handle and read-back helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from infra.local.postgres import PostgresDatabase
from ledger.domain import EngineBalance, EngineBalances, EngineStatus

SERVICE_LOGIN = "ledger_app"  # tests/conftest.py creates it


@dataclass(frozen=True)
class LedgerDatabase:
    database: PostgresDatabase

    @property
    def owner_url(self) -> str:
        """The superuser who ran the migrations (bound by the append-only triggers too)."""
        return self.database.url()

    @property
    def service_url(self) -> str:
        """The service's login role: a member of `ledger_service`, nothing more."""
        return self.database.url(user=SERVICE_LOGIN)

    def owner_connection(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(self.database.conninfo())

    def service_connection(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(self.database.conninfo(user=SERVICE_LOGIN))

    def balances(self) -> dict[tuple[str, str, int], int]:
        """(owner, asset, kind) -> materialized balance, zero balances left out."""
        with self.owner_connection() as connection:
            rows = connection.execute(
                "SELECT a.owner_id, a.asset, a.kind, b.balance FROM balances AS b "
                "JOIN accounts AS a USING (account_id) WHERE b.balance <> 0"
            ).fetchall()
        return {(o, a, k): b for o, a, k, b in rows}

    def count(self, table: str) -> int:
        with self.owner_connection() as connection:
            row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


class FakeCore:
    """The core's balances per engine_seq, as a test states them."""

    def __init__(
        self,
        by_engine_seq: Mapping[int, list[EngineBalance]],
        engine_seq: int,
        *,
        last_event_engine_seq: int = 0,  # 0: every command up to engine_seq had events
    ) -> None:
        self.by_engine_seq = by_engine_seq
        self.engine_seq = engine_seq
        self.last_event_engine_seq = last_event_engine_seq
        self.asked: list[int] = []

    async def engine_balances(self, *, at_engine_seq: int) -> EngineBalances:
        self.asked.append(at_engine_seq)
        at = at_engine_seq or self.engine_seq
        known = max(seq for seq in self.by_engine_seq if seq <= at)
        return EngineBalances(at, tuple(self.by_engine_seq[known]))

    async def engine_status(self) -> EngineStatus:
        return EngineStatus(
            "shard-1", 1, self.engine_seq, last_event_engine_seq=self.last_event_engine_seq
        )
