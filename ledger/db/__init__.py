"""The ledger's PostgreSQL adapter: connections, migrations, SQL."""
