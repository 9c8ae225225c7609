"""The engine "at an earlier seq" (GetStateHash, GetEngineBalances: the ledger's
reconciliation) brings the engine it rebuilt last forward instead of replaying from the last
snapshot each time (docs/adr/0020): a request costs the commands since the previous one.

Each answer is checked against a cold rebuild from the files (a fresh engine and the WAL):
brought forward or not, the state at a seq is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from exchange.core.v1 import core_admin_pb2

from core.engine import Engine
from core.service.historical_state import rebuild_engine
from core.service.testing import fund_load_accounts, operator, trade_and_cancel
from tests.integration.core.service.service_harness import Harness, start_harness

ACCOUNTS: Final = ("hist-a", "hist-b", "hist-c")
ROUNDS: Final = 400  # 1,200 orders, 400 cancels: 1,600 engine seqs
BEHIND: Final = 7  # how far behind the live seq the reconciliation asks


@pytest.fixture
async def traded(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path / "core")
    try:
        await fund_load_accounts(harness.channel, ACCOUNTS)
        await trade_and_cancel(harness.channel, ACCOUNTS, 0, ROUNDS)
        yield harness
    finally:
        await harness.channel.close()
        await harness.core.stop()


def cold_hash(service: Harness, engine_seq: int) -> str:
    sequencer = service.core.runtime.sequencer
    engine = rebuild_engine(
        sequencer.directory, sequencer.wal, sequencer.options.engine_config, engine_seq
    ).engine
    return engine.state_hash()


async def hash_at(service: Harness, engine_seq: int) -> str:
    answer = await service.admin.GetStateHash(
        core_admin_pb2.GetStateHashRequest(at_engine_seq=engine_seq), metadata=operator()
    )
    assert answer.engine_seq == engine_seq
    return answer.state_hash


async def test_reconciling_behind_the_live_seq_replays_only_what_is_new(traded: Harness) -> None:
    historical = traded.core.runtime.historical
    sequencer = traded.core.runtime.sequencer
    first_seq = sequencer.engine_seq - BEHIND
    assert first_seq > 1_000
    balances = await traded.admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(at_engine_seq=first_seq), metadata=operator()
    )
    assert balances.engine_seq == first_seq
    assert historical.records_applied == first_seq  # no snapshot yet: from seq 1
    asked = first_seq
    for step in range(3):
        await trade_and_cancel(traded.channel, ACCOUNTS, ROUNDS + 10 * step, 10)
        applied_before = historical.records_applied
        seq = sequencer.engine_seq - BEHIND
        assert await hash_at(traded, seq) == cold_hash(traded, seq)
        assert historical.records_applied - applied_before == seq - asked
        asked = seq


async def test_older_seqs_and_concurrent_requests_answer_the_state_at_their_seq(
    traded: Harness,
) -> None:
    live = traded.core.runtime.sequencer.engine_seq
    seqs = [live - 10, live - 400, live - 3, live - 900, live - 2]
    answers = await asyncio.gather(*(hash_at(traded, seq) for seq in seqs))
    assert answers == [cold_hash(traded, seq) for seq in seqs]
    assert len(set(answers)) == len(seqs)
    assert await hash_at(traded, live - 400) == answers[1]  # behind the kept one: rebuilt


async def test_a_rebuild_whose_caller_went_away_finishes_and_is_kept(traded: Harness) -> None:
    historical = traded.core.runtime.historical
    seq = traded.core.runtime.sequencer.engine_seq - 50

    def state_hash(engine: Engine, _seq: int, _last_event_seq: int) -> str:
        return engine.state_hash()

    applied_before = historical.records_applied
    abandoned = asyncio.create_task(historical.read_at(seq, state_hash))
    while not getattr(historical, "_lock").locked():  # noqa: B009  (until the rebuild starts)
        await asyncio.sleep(0)
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert await historical.read_at(seq + 5, state_hash) == cold_hash(traded, seq + 5)
    # Both rebuilds ran, the second from the first: seq records from seq 1, then 5.
    assert historical.rebuilds == 2
    assert historical.records_applied - applied_before == seq + 5
