"""Exceptions raised by the engine.

A business rejection is never an exception: it is a `RejectReason` in the returned outcome.
An exception means the engine's own invariants broke (a bug, or a caller that broke the
contract, e.g. a non-increasing engine_seq); the state must be treated as suspect.
"""

from __future__ import annotations


class EngineInvariantError(Exception):
    """An invariant of the engine's state machine was violated."""
