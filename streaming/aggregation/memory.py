"""Dict-backed state for the rules: tests, the bench's reference and replays in memory."""

from __future__ import annotations

import copy
from typing import Any


class MemoryState:
    """A `KeyValueState` in a dict. Values are deep-copied on the way in and out, as a
    serializing store (Quix's RocksDB state) would, so aliasing bugs show in tests."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else copy.deepcopy(value)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = copy.deepcopy(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class MemoryStates:
    """One MemoryState per market plus one for the partition."""

    def __init__(self) -> None:
        self.markets: dict[str, MemoryState] = {}
        self.partition = MemoryState()

    def market(self, symbol: str) -> MemoryState:
        return self.markets.setdefault(symbol, MemoryState())
