"""Schema migrations (Alembic, ledger/migrations): `python -m ledger.db.migrate URL`.

Run them as the database owner; the service connects as a login role that is a member of
`ledger_service` (created by the first migration), which cannot change the journal.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config

MIGRATIONS_DIRECTORY: Final = Path(__file__).resolve().parent.parent / "migrations"
SERVICE_ROLE: Final = "ledger_service"


def alembic_config(url: str) -> Config:
    """`url` is a SQLAlchemy URL with the psycopg 3 driver (postgresql+psycopg://...)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="postgresql+psycopg://owner@host:port/database")
    parser.add_argument("--revision", default="head")
    arguments = parser.parse_args()
    upgrade(arguments.url, arguments.revision)


if __name__ == "__main__":
    main()
