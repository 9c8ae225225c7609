"""A write-back cache in front of a KeyValueState, for one checkpoint.

The rules read and write a few small keys per trade. Against Quix's RocksDB state every
get/set costs a serialization and a transaction lookup (~15 µs each on this machine), so
the app keeps one `WriteBackState` per market per checkpoint: the first `get` of a key reads
the backing state, later gets and every set/delete stay in a dict, and `write_to` puts the
changed keys into the backing state once, at the checkpoint, before it commits.

Invariants:
- After `write_to(backing)`, `backing` holds exactly what it would hold had every set/delete
  gone to it directly (property-tested against MemoryState).
- Values are kept by reference, not copied: the rules never change a value they got
  without setting it again (MemoryState deep-copies in the rules' tests, so a rule that
  relied on aliasing would fail them).
- One instance lives for one checkpoint only: a checkpoint that does not commit discards
  it, and the next one starts from the backing state again.
"""

from __future__ import annotations

from typing import Any, Final

from streaming.aggregation.market import KeyValueState

_UNREAD: Final = object()


class WriteBackState:
    """A KeyValueState that reads through to `backing` once per key and writes back on
    `write_to`. A stored None means "absent" (as the rules' states treat it)."""

    __slots__ = ("_backing", "_dirty", "_values")

    def __init__(self, backing: KeyValueState) -> None:
        self._backing = backing
        self._values: dict[str, Any] = {}
        self._dirty: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        value = self._values.get(key, _UNREAD)
        if value is _UNREAD:
            value = self._values[key] = self._backing.get(key)
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        self._values[key] = None
        self._dirty.add(key)

    def write_to(self, backing: KeyValueState) -> None:
        """Put every changed key into `backing` (the same store this one read from, or its
        equivalent in the committing checkpoint), sorted so the changelog order is stable."""
        for key in sorted(self._dirty):
            value = self._values[key]
            if value is None:
                backing.delete(key)
            else:
                backing.set(key, value)
        self._dirty.clear()
