"""Reconciliation with the core: balances at the same engine_seq, and every sequence gap.

The ledger's balance of an account at engine_seq N is the sum of the postings of the shard's
entries with engine_seq <= N (plus the ledger's own adjusting corrections, engine_seq 0).
The core answers `CoreAdminService.GetEngineBalances(at_engine_seq=N)`. They are compared:
- engine `available` <-> ledger AVAILABLE (the fee account `exchange:fees`: its FEES account),
- engine `held` <-> ledger HELD,
- for the whole shard ("-"): per asset, minus the engine's supply (the sum of every balance)
  <-> the ledger's EXTERNAL account, i.e. deposits - withdrawals + adjustments agree.
For one market, the accounts compared are those the market's entries touched, in the
market's assets. Gaps: every hole the settlement consumer recorded in the streams in scope
(resolved or not), plus a missing tail when the core reported (ReportEngineSeq) a stream
further than the ledger has seen although the ledger has posted past the reported engine_seq.

Lag: the balances are compared at what the ledger has posted, so a ledger that stopped
consuming would compare equal at an old seq. Every report therefore carries the lag - the
core's newest command with events (GetEngineStatus.last_event_engine_seq) minus the ledger's
engine_seq - and how long the ledger has not advanced (`shard_positions.advanced_at`) while it
lags. Past a bound (`LagBound`: more than `engine_seqs_max` seqs, or stalled for more than
`stalled_ms_max` with a lag) the status is LAGGING, never MATCHED. A ledger that was
idle for longer than the stall bound reads LAGGING for the moment it takes to post a new
burst; asking again answers.

Every reconciliation records a `ReconciliationCompleted` event (ledger/events_outbox.py;
the same report twice is one event: its id is a digest of the report).

The core is reached through `CoreView` (a gRPC client of CoreAdminService in production,
`GrpcCoreView`); tests inject their own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import grpc
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from common.identity_headers import operator_metadata
from ledger.db.connection import DriverConnection, driver_connection
from ledger.domain import (
    Difference,
    EngineBalance,
    EngineBalances,
    EngineStatus,
    GapReport,
    LagBound,
    ReconciliationReport,
    ReconciliationStatus,
)
from ledger.errors import LedgerError, Reason
from ledger.events_outbox import now, reconciliation_completed, record_events
from ledger.journal import AccountKey, AccountKind, available, external, held

ALL_MARKETS: Final = "-"
RECONCILIATION_OPERATOR_ID: Final = "ledger:reconciliation"


class CoreView(Protocol):
    """What reconciliation needs from the core (CoreAdminService)."""

    async def engine_balances(self, *, at_engine_seq: int) -> EngineBalances: ...

    async def engine_status(self) -> EngineStatus: ...


class GrpcCoreView:
    """CoreView over a gRPC channel to the core's CoreAdminService."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_seconds: float = 10.0) -> None:
        self._stub = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        self._timeout_seconds = timeout_seconds
        self._metadata = operator_metadata(RECONCILIATION_OPERATOR_ID)

    async def engine_balances(self, *, at_engine_seq: int) -> EngineBalances:
        try:
            response = await self._stub.GetEngineBalances(
                core_admin_pb2.GetEngineBalancesRequest(at_engine_seq=at_engine_seq),
                metadata=self._metadata,
                timeout=self._timeout_seconds,
            )
        except grpc.aio.AioRpcError as error:
            raise _core_unavailable(error) from error
        return EngineBalances(
            response.engine_seq,
            tuple(
                EngineBalance(b.account_id, b.asset, b.available, b.held) for b in response.balances
            ),
            response.last_event_engine_seq,
        )

    async def engine_status(self) -> EngineStatus:
        try:
            response = await self._stub.GetEngineStatus(
                core_admin_pb2.GetEngineStatusRequest(),
                metadata=self._metadata,
                timeout=self._timeout_seconds,
            )
        except grpc.aio.AioRpcError as error:
            raise _core_unavailable(error) from error
        return EngineStatus(
            response.shard_id,
            response.epoch,
            response.engine_seq,
            {market.symbol: market.seq for market in response.markets},
            response.last_event_engine_seq,
        )


def _core_unavailable(error: grpc.aio.AioRpcError) -> LedgerError:
    """DEPENDENCY_UNAVAILABLE, unless the core refused the caller's own input (an
    `at_engine_seq` after its current seq): that is the caller's FIELD_INVALID, not a 503."""
    if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
        return LedgerError(
            Reason.FIELD_INVALID, f"the core refused it: {error.details()}", field="at_engine_seq"
        )
    return LedgerError(
        Reason.DEPENDENCY_UNAVAILABLE,
        f"the core did not answer: {error.code().name} {error.details()}",
        dependency="core",
    )


_LEDGER_BALANCES_AT = """
SELECT a.owner_id, a.asset, a.kind, sum(p.amount)::bigint
FROM postings AS p
JOIN journal_entries AS e USING (entry_id)
JOIN accounts AS a USING (account_id)
WHERE (e.shard_id = %(shard)s AND e.engine_seq <= %(at)s) OR e.shard_id = ''
GROUP BY a.owner_id, a.asset, a.kind
"""

_MARKET_SCOPE = """
SELECT DISTINCT a.owner_id, a.asset
FROM journal_entries AS e
JOIN postings AS p USING (entry_id)
JOIN accounts AS a USING (account_id)
WHERE e.shard_id = %s AND e.symbol = %s AND a.kind IN (1, 2, 3)
"""


class Reconciliation:
    """Compares one core shard with the ledger."""

    def __init__(
        self,
        engine: AsyncEngine,
        core: CoreView,
        *,
        shard_id: str,
        lag_bound: LagBound | None = None,
    ) -> None:
        self._engine = engine
        self._core = core
        self._shard_id = shard_id
        self._lag_bound = lag_bound or LagBound()

    async def report_engine_seq(
        self, *, shard_id: str, epoch: int, engine_seq: int, market_seqs: Mapping[str, int]
    ) -> int:
        """Store where the core is; returns the last engine_seq the ledger posted for it."""
        if not shard_id:
            raise LedgerError(Reason.FIELD_INVALID, "shard_id is required", field="shard_id")
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            await connection.execute(
                "INSERT INTO core_positions (shard_id, epoch, engine_seq, market_seqs) "
                "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (shard_id) DO UPDATE SET "
                "epoch = EXCLUDED.epoch, engine_seq = EXCLUDED.engine_seq, "
                "market_seqs = EXCLUDED.market_seqs, reported_at = now() "
                "WHERE core_positions.engine_seq <= EXCLUDED.engine_seq",
                (shard_id, epoch, engine_seq, json.dumps(dict(market_seqs))),
            )
            ledger_engine_seq, _ = await _shard_position(connection, shard_id)
        return ledger_engine_seq

    async def reconcile(self, *, symbol: str, at_engine_seq: int = 0) -> ReconciliationReport:
        market = "" if symbol in ("", ALL_MARKETS) else symbol
        async with self._engine.connect() as sa_connection:
            await sa_connection.execution_options(isolation_level="REPEATABLE READ")
            connection = await driver_connection(sa_connection)
            ledger_engine_seq, stalled_ms = await _ledger_progress(connection, self._shard_id)
            at = at_engine_seq or ledger_engine_seq
            core_balances = await self._core.engine_balances(at_engine_seq=at)
            core_status = await self._core.engine_status()
            ledger = await _ledger_balances(connection, self._shard_id, at)
            scope = None if not market else await _market_scope(connection, self._shard_id, market)
            gaps = await _gaps(connection, self._shard_id, market, ledger_engine_seq)
            await sa_connection.rollback()
        differences = compare_balances(core_balances.balances, ledger, scope=scope)
        core_last_event_seq = core_status.last_event_engine_seq or core_status.engine_seq
        lag_engine_seqs = max(0, core_last_event_seq - ledger_engine_seq)
        stalled_ms = stalled_ms if lag_engine_seqs else 0
        if (core_balances.last_event_engine_seq or at) > ledger_engine_seq:
            status = ReconciliationStatus.BEHIND
        elif differences or any(not gap.resolved for gap in gaps):
            status = ReconciliationStatus.DIFFERENCES
        elif self._lag_bound.exceeded(lag_engine_seqs, stalled_ms):
            status = ReconciliationStatus.LAGGING
        else:
            status = ReconciliationStatus.MATCHED
        report = ReconciliationReport(
            symbol=market or ALL_MARKETS,
            status=status,
            engine_seq=core_balances.engine_seq,
            core_engine_seq=core_status.engine_seq,
            ledger_engine_seq=ledger_engine_seq,
            gaps=tuple(gaps),
            differences=tuple(differences),
            lag_engine_seqs=lag_engine_seqs,
            stalled_ms=stalled_ms,
        )
        event = reconciliation_completed(report, shard_id=self._shard_id, generated_at=now())
        async with self._engine.begin() as sa_connection:
            await record_events(await driver_connection(sa_connection), [event])
        return report


def compare_balances(
    core: Sequence[EngineBalance],
    ledger: Mapping[AccountKey, int],
    *,
    scope: set[tuple[str, str]] | None,
) -> list[Difference]:
    """Every (account, asset, kind) on which core and ledger disagree. Pure.

    `scope` limits the comparison to (owner, asset) pairs; None compares everything,
    including each asset's EXTERNAL account against minus the core's supply.
    """
    expected: dict[AccountKey, int] = {}
    supply: defaultdict[str, int] = defaultdict(int)
    for balance in core:
        expected[available(balance.account_id, balance.asset)] = balance.available
        if balance.held:
            expected[held(balance.account_id, balance.asset)] = balance.held
        supply[balance.asset] += balance.available + balance.held
    if scope is None:
        for asset, total in supply.items():
            expected[external(asset)] = -total
    keys = set(expected) | set(ledger)
    differences = []
    for key in sorted(keys, key=lambda k: (k.owner_id, k.asset, k.kind)):
        if scope is not None and (
            (key.owner_id, key.asset) not in scope or key.kind is AccountKind.EXTERNAL
        ):
            continue
        core_value, ledger_value = expected.get(key, 0), ledger.get(key, 0)
        if core_value != ledger_value:
            differences.append(Difference(key, core_value, ledger_value))
    return differences


async def _shard_position(connection: DriverConnection, shard_id: str) -> tuple[int, int]:
    cursor = await connection.execute(
        "SELECT engine_seq_last, epoch FROM shard_positions WHERE shard_id = %s", (shard_id,)
    )
    row = await cursor.fetchone()
    return (0, 0) if row is None else (row[0], row[1])


async def _ledger_progress(connection: DriverConnection, shard_id: str) -> tuple[int, int]:
    """(engine_seq posted, milliseconds since the ledger last advanced it) for the shard."""
    cursor = await connection.execute(
        "SELECT engine_seq_last, greatest(0, (1000 * extract(epoch FROM clock_timestamp() - "
        "advanced_at))::bigint) FROM shard_positions WHERE shard_id = %s",
        (shard_id,),
    )
    row = await cursor.fetchone()
    return (0, 0) if row is None else (row[0], row[1])


async def _ledger_balances(
    connection: DriverConnection, shard_id: str, at: int
) -> dict[AccountKey, int]:
    cursor = await connection.execute(_LEDGER_BALANCES_AT, {"shard": shard_id, "at": at})
    return {
        AccountKey(owner, asset, AccountKind(kind)): total
        for owner, asset, kind, total in await cursor.fetchall()
    }


async def _market_scope(
    connection: DriverConnection, shard_id: str, symbol: str
) -> set[tuple[str, str]]:
    cursor = await connection.execute(_MARKET_SCOPE, (shard_id, symbol))
    return {(owner, asset) for owner, asset in await cursor.fetchall()}


async def _gaps(
    connection: DriverConnection, shard_id: str, symbol: str, ledger_engine_seq: int
) -> list[GapReport]:
    """Recorded gaps (resolved or not) and a missing tail, for one stream or all of them."""
    every = symbol == ""
    cursor = await connection.execute(
        "SELECT symbol, first_missing_seq, last_missing_seq FROM sequence_holes "
        "WHERE shard_id = %s AND (%s OR symbol = %s)",
        (shard_id, every, symbol),
    )
    holes = await cursor.fetchall()
    cursor = await connection.execute(
        "SELECT symbol, first_missing_seq, last_missing_seq FROM sequence_gaps "
        "WHERE shard_id = %s AND (%s OR symbol = %s) ORDER BY gap_id",
        (shard_id, every, symbol),
    )
    reports = []
    for gap_symbol, first, last in await cursor.fetchall():
        still_missing = any(
            hole_symbol == gap_symbol and hole_first <= last and hole_last >= first
            for hole_symbol, hole_first, hole_last in holes
        )
        reports.append(GapReport(gap_symbol, first, last, resolved=not still_missing))
    cursor = await connection.execute(
        "SELECT c.engine_seq, c.market_seqs FROM core_positions AS c WHERE c.shard_id = %s",
        (shard_id,),
    )
    reported = await cursor.fetchone()
    if reported is not None and reported[0] <= ledger_engine_seq:
        cursor = await connection.execute(
            "SELECT symbol, seq_last FROM stream_positions WHERE shard_id = %s", (shard_id,)
        )
        seen: dict[str, int] = dict(await cursor.fetchall())
        for market, core_seq in sorted(reported[1].items()):
            if (every or market == symbol) and core_seq > seen.get(market, 0):
                reports.append(GapReport(market, seen.get(market, 0) + 1, core_seq, resolved=False))
    return reports
