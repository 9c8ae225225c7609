"""The settlement consumer's planner: raw core events -> a `ReadyBatch`, in a process of its own.

Why a process: planning a batch (parsing, posting rules, COPY text, balance sums) is pure
Python, ~15 us per event. In a thread it holds the GIL that the event loop needs after every
database round trip, so it hardly overlaps the writes (`bench/ledger_bench.py` measured the
threaded pipeline no faster than planning and writing one after the other). In a process it
runs on another core while PostgreSQL writes the batch before, and the consumer's process is
left with the transaction.

What crosses the process boundary is cheap to pickle: raw records in; out, a few strings
(the COPY payloads as ready text, the balance deltas as array literals) and one small tuple
per stream and shard — never an object per event (unpickling planned entries would cost what
planning them does, ADR 0010).

To write finished COPY text the planner needs two things from the database, both outside any
transaction and both harmless if the batch is then not posted this way:
- entry ids, from `ledger_allocate_entry_ids` (a sequence never rolls back; unused ids are
  a gap, as a trade found to exist already leaves one);
- account ids: accounts are created on first use and committed at once (INSERT ... ON
  CONFLICT DO NOTHING), then cached; an account without postings has no balance.
Every entry, posting, balance, position and offset is still written by settlement in ONE
transaction (`Settlement.post_ready`), so crash safety is unchanged.

The plan holds for the steady state only, as ledger/batch_rules.py decides it: each stream's
events consecutive, one epoch per shard, no entry twice (`steady_runs`). Settlement checks it
against the stored positions (`SteadyRuns.continues`) and otherwise posts the raw records
by the general path (`Settlement.post`: gaps, duplicates, redeliveries, fenced epochs) in the
same transaction. A malformed record
is not planned (`plan` is None): the general path refuses it with its named error.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import psycopg
from exchange.events.v1 import envelope_pb2
from google.protobuf.message import DecodeError
from sqlalchemy.engine import make_url

from ledger.batch_rules import SteadyRuns, steady_runs
from ledger.db.accounts import AccountIds
from ledger.db.copy_rows import entries_text, postings_text
from ledger.db.journal_writer import BalanceArrays, balance_arrays, balance_changes
from ledger.errors import LedgerError
from ledger.gc_tuning import tune_garbage_collector
from ledger.journal import EntryKind, PlannedEntry
from ledger.posting_rules import plan_events


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """A batch ready to COPY, valid while its assumptions hold against the stored state."""

    runs: SteadyRuns  # each shard's one epoch and highest engine_seq, each stream's seqs
    trade_references: str  # the trades' references as a text[] literal; "" when none
    entries_copy: str  # COPY text of journal_entries, ids included
    postings_copy: str  # COPY text of postings
    entry_ids: list[int]  # in posting order
    balances: BalanceArrays | None
    adjustments: list[tuple[str, int]]  # (transfer id, entry id) of operator adjustments


@dataclass(frozen=True, slots=True)
class ReadyBatch:
    """The raw records (the general path's input) and, in the steady state, their plan."""

    values: list[bytes]
    plan: CopyPlan | None


def parse_records(values: Sequence[bytes]) -> list[envelope_pb2.EventEnvelope]:
    envelopes = []
    for value in values:
        envelope = envelope_pb2.EventEnvelope()
        envelope.ParseFromString(value)
        envelopes.append(envelope)
    return envelopes


def array_literal(texts: Sequence[str]) -> str:
    """A text[] literal, every element quoted and escaped."""
    quoted = (text.replace("\\", "\\\\").replace('"', '\\"') for text in texts)
    return "{" + ",".join(f'"{text}"' for text in quoted) + "}"


class RecordPlanner:
    """Plans batches of raw records: a connection in autocommit (entry ids, accounts) and the
    account-id cache. Synchronous; `BatchPlanner` runs one in a process."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._connection = psycopg.connect(conninfo, autocommit=True)
        self._accounts = AccountIds()

    def close(self) -> None:
        self._connection.close()

    def plan(self, values: list[bytes]) -> ReadyBatch:
        try:
            headers, plans = plan_events(parse_records(values))
        except (DecodeError, LedgerError):
            return ReadyBatch(values, None)  # the general path names the error
        runs = steady_runs(headers, plans)
        if runs is None:
            return ReadyBatch(values, None)  # the general path posts it
        entries = [plan for plan in plans if plan is not None]
        try:
            return ReadyBatch(values, self._copy_plan(runs, entries))
        except psycopg.Error:
            # The database is away or restarted: the general path meets (and reports) the
            # same trouble in the settlement transaction; the next plan reconnects.
            self._connection.close()
            return ReadyBatch(values, None)

    def _copy_plan(self, runs: SteadyRuns, entries: list[PlannedEntry]) -> CopyPlan:
        entry_ids = self._allocate_entry_ids(len(entries))
        account_ids = self._accounts.resolve_now(self._connection, entries)
        trades = [entry.reference for entry in entries if entry.kind is EntryKind.TRADE]
        return CopyPlan(
            runs=runs,
            trade_references=array_literal(trades) if trades else "",
            entries_copy=entries_text(entries, entry_ids),
            postings_copy=postings_text(entries, entry_ids, account_ids),
            entry_ids=entry_ids,
            balances=balance_arrays(balance_changes(entries, account_ids)),
            adjustments=[
                (entry.transfer_id, entry_id)
                for entry, entry_id in zip(entries, entry_ids, strict=True)
                if entry.kind is EntryKind.ADJUSTMENT and entry.transfer_id
            ],
        )

    def _allocate_entry_ids(self, count: int) -> list[int]:
        if count == 0:
            return []
        if self._connection.closed:
            self._connection = psycopg.connect(self._conninfo, autocommit=True)
        rows = self._connection.execute("SELECT ledger_allocate_entry_ids(%s)", (count,))
        return [row[0] for row in rows.fetchall()]


def psycopg_conninfo(database_url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as a libpq connection URI."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


_planner: RecordPlanner | None = None
PARENT_CHECK_SECONDS = 0.2


def _exit_with_parent(parent_pid: int) -> None:
    """A pool worker does not notice its parent's death (it waits on a pipe it holds both
    ends of): once the parent is gone — a SIGKILL, a crash — the planner exits too, and
    its database connection with it."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _start_planner(conninfo: str, parent_pid: int) -> None:
    global _planner  # noqa: PLW0603 (the planner process's one planner)
    threading.Thread(
        target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()
    _planner = RecordPlanner(conninfo)
    tune_garbage_collector()


def _plan(values: list[bytes]) -> CopyPlan | None:
    """In the planner process: only the plan travels back (the caller has the records)."""
    if _planner is None:
        message = "the planner process did not start"
        raise RuntimeError(message)
    return _planner.plan(values).plan


class BatchPlanner:
    """A `RecordPlanner` in a process of its own (spawned on first use), for asyncio."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = psycopg_conninfo(database_url)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_planner,
            initargs=(self._conninfo, os.getpid()),
        )

    async def plan(self, values: list[bytes]) -> ReadyBatch:
        """Plan `values`; a planner process that died is replaced once."""
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(self._pool, _plan, values)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            plan = await loop.run_in_executor(self._pool, _plan, values)
        return ReadyBatch(values, plan)

    async def process_id(self) -> int:
        """The planner process's pid (starting it if needed)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, os.getpid)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
