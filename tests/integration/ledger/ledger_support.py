"""Shared by the ledger's integration tests: the database handle and read-back helpers."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from infra.local.postgres import PostgresDatabase

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
