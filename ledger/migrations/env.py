"""Alembic environment: migrations run with the URL the caller put in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
if not url:
    message = "sqlalchemy.url is not set (use ledger.db.migrate.upgrade)"
    raise RuntimeError(message)

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
