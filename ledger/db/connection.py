"""Connections: an async SQLAlchemy engine on psycopg 3, and the raw driver connection.

The hot path (settlement) talks to psycopg directly (COPY, array parameters) inside the
SQLAlchemy-managed transaction; everything else uses SQLAlchemy Core.
"""

from __future__ import annotations

from typing import cast

import psycopg
from psycopg.rows import TupleRow
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

DriverConnection = psycopg.AsyncConnection[TupleRow]


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """`url`: postgresql+psycopg://user@host:port/database (the service's login role)."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


async def driver_connection(connection: AsyncConnection) -> DriverConnection:
    """The psycopg connection under a SQLAlchemy connection (same transaction)."""
    raw = await connection.get_raw_connection()
    return cast("DriverConnection", raw.driver_connection)
