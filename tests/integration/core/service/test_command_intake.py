"""CommandIntake against a real Sequencer and WAL: single commands of one event-loop iteration
are coalesced into one logged batch, every caller gets its own result, in WAL order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from exchange.common.v1 import errors_pb2

from core.engine import ApplyResult, Command, Deposit, PlaceOrder, Side
from core.engine.testing import BTC, USDT
from core.sequencer import Sequencer
from core.sequencer.testing import btc_usdt_setup_commands
from core.service.command_intake import CommandIntake
from core.service.errors import ServiceError

PRICE = 50_000 * USDT
LOT = BTC // 10_000


@pytest.fixture
async def sequencer(tmp_path: Path) -> AsyncIterator[Sequencer]:
    sequencer = Sequencer.open(tmp_path / "shard", clock=time.time_ns)
    await sequencer.submit(
        [
            *btc_usdt_setup_commands(),
            Deposit(account_id="alice", asset="USDT", amount=10**6 * USDT, transfer_id="t-1"),
        ]
    )
    yield sequencer
    await sequencer.aclose()


def _order(index: int) -> PlaceOrder:
    return PlaceOrder(
        account_id="alice",
        symbol="BTC-USDT",
        side=Side.BUY,
        quantity=LOT,
        price=PRICE - index * USDT // 100,
        client_order_id=f"c-{index}",
    )


class _Batches:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, commands: Sequence[Command], results: Sequence[ApplyResult]) -> None:
        assert len(commands) == len(results)
        self.sizes.append(len(commands))


async def test_single_commands_of_one_iteration_are_one_batch(sequencer: Sequencer) -> None:
    batches = _Batches()
    intake = CommandIntake(sequencer, [batches])
    seq_before = sequencer.engine_seq
    results = await asyncio.gather(*(intake.submit_one(_order(index)) for index in range(50)))
    assert batches.sizes == [50]
    # each caller got the result of its own command, in call order = WAL order
    assert [result.outcome.engine_seq for result in results] == list(
        range(seq_before + 1, seq_before + 51)
    )
    for index, result in enumerate(results):
        assert result.outcome.reason is None
        order = sequencer.engine.order(result.outcome.order_id)
        assert order is not None
        assert order.client_order_id == f"c-{index}"
    # a later call is a batch of its own
    await intake.submit_one(_order(50))
    assert batches.sizes == [50, 1]
    assert intake.pending_count == 0


async def test_a_cancelled_caller_does_not_disturb_the_others(sequencer: Sequencer) -> None:
    intake = CommandIntake(sequencer)
    calls = [asyncio.ensure_future(intake.submit_one(_order(index))) for index in range(3)]
    await asyncio.sleep(0)  # the calls are waiting for the coalesced batch
    calls[1].cancel()
    first, second = await calls[0], await calls[2]
    assert second.outcome.engine_seq == first.outcome.engine_seq + 2
    assert calls[1].cancelled()
    # the cancelled caller's command was still logged and applied
    assert sequencer.engine.order(first.outcome.order_id + 1) is not None


async def test_a_failed_batch_fails_every_caller_by_name(sequencer: Sequencer) -> None:
    intake = CommandIntake(sequencer)
    sequencer.close()
    outcomes = await asyncio.gather(
        *(intake.submit_one(_order(index)) for index in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ServiceError) for outcome in outcomes)
    assert {outcome.reason for outcome in outcomes if isinstance(outcome, ServiceError)} == {
        errors_pb2.ERROR_REASON_ENGINE_UNAVAILABLE
    }
    assert len({id(outcome) for outcome in outcomes}) == 3
