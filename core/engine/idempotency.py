"""Bounded, deterministic per-account memory: idempotency keys and recently closed orders.

"Put a limit on everything": each account keeps at most `entries_max_per_account` entries per
table; inserting beyond that evicts the account's OLDEST entry (FIFO by insertion, which
depends only on the command sequence, so replay evicts identically). A key evicted from the
table is forgotten: reusing it later is treated as a new request.

Layout (hot path: one `put` per closed order): per account a plain dict (key -> value) and a
deque of its keys in insertion order. Both are C-level and cheaper than an OrderedDict, whose
per-entry linked-list node costs an extra allocation and cache misses on eviction.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from core.engine.errors import EngineInvariantError

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")


class PerAccountFifo(Generic[KeyT, ValueT]):
    __slots__ = ("_by_account", "_order_by_account", "entries_max_per_account")

    def __init__(self, entries_max_per_account: int) -> None:
        if entries_max_per_account < 1:
            msg = f"entries_max_per_account must be positive, got {entries_max_per_account}"
            raise EngineInvariantError(msg)
        self.entries_max_per_account = entries_max_per_account
        self._by_account: dict[str, dict[KeyT, ValueT]] = {}
        self._order_by_account: dict[str, deque[KeyT]] = {}  # keys, oldest first

    def get(self, account_id: str, key: KeyT) -> ValueT | None:
        entries = self._by_account.get(account_id)
        if entries is None:
            return None
        return entries.get(key)

    def put(self, account_id: str, key: KeyT, value: ValueT) -> None:
        entries = self._by_account.get(account_id)
        if entries is None:
            entries = self._by_account[account_id] = {}
            self._order_by_account[account_id] = deque()
        size = len(entries)
        entries[key] = value
        if len(entries) == size:  # the key was there already: one probe instead of two
            msg = f"idempotency key {key!r} of {account_id!r} stored twice"
            raise EngineInvariantError(msg)
        keys = self._order_by_account[account_id]
        keys.append(key)
        if size >= self.entries_max_per_account:
            del entries[keys.popleft()]

    def copy_tables(self) -> dict[str, dict[KeyT, ValueT]]:
        """A copy of every account's table (each dict iterates oldest first: it keeps
        insertion order and only its oldest entries are ever deleted). Values are shared, so
        this is a consistent copy as long as they are immutable (they are, in the engine)."""
        return {account_id: entries.copy() for account_id, entries in self._by_account.items()}
