"""Ledger: the append-only double-entry book of record on PostgreSQL."""
