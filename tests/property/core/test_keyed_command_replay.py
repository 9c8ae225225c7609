"""Property: request_id idempotency through a real Sequencer (WAL files), live vs recovered.

Random command sequences (places, keyed cancels / amends / cancel-alls / market modes drawn
from few request ids, verbatim retries of earlier keyed commands, reuses of a key with another
body, explicit snapshots at random points) go through `Sequencer.submit` in random batches.
Live, every result is checked against a model of the per-caller FIFO window (ADR 0016): a key
in the window with an equal command is a duplicate with the first outcome and no events; with
another command IDEMPOTENCY_KEY_REUSED; otherwise the command is applied and its key enters
the window. Then the sequencer is reopened on the same directory (snapshot + WAL tail): the
state hash, the replayed state hash and the idempotency tables equal the live ones, and every
key still in the window answers its first outcome again without changing the state.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.engine import (
    AmendOrder,
    ApplyResult,
    CancelAllOrders,
    CancelOrder,
    Command,
    Deposit,
    EngineConfig,
    MarketMode,
    Outcome,
    RejectReason,
    SetMarketMode,
    Side,
)
from core.engine.commands import KeyedCommand
from core.engine.testing import BTC, USDT, limit_order
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import StepClock, btc_usdt_setup_commands

WINDOW = 4  # small, so keys are evicted
ACCOUNTS = ("alice", "bob")
OPERATORS = ("op-1", "op-2")
PRICE = 50_000 * USDT
TICK = USDT // 100
LOT = BTC // 10_000
OPTIONS = SequencerOptions(
    snapshot_every_commands=0, engine_config=EngineConfig(request_ids_max_per_account=WINDOW)
)


def _caller(command: KeyedCommand) -> tuple[str, str]:
    if isinstance(command, SetMarketMode):
        return ("operator", command.operator_id)
    return ("account", command.account_id)


class WindowModel:
    """The expected request-id tables: per caller, the last WINDOW new keys, oldest first."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], OrderedDict[str, tuple[KeyedCommand, Outcome]]] = {}

    def check(self, command: Command, result: ApplyResult) -> None:
        if not isinstance(command, CancelOrder | CancelAllOrders | AmendOrder | SetMarketMode):
            return
        if not command.request_id:
            assert not result.duplicate
            return
        table = self.tables.setdefault(_caller(command), OrderedDict())
        known = table.get(command.request_id)
        if known is not None:
            if known[0] == command:
                assert result.duplicate
                assert result.events == ()
                assert result.outcome == known[1]
            else:
                assert not result.duplicate
                assert result.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
                assert result.events == ()
            return
        assert not result.duplicate
        assert result.outcome.reason is not RejectReason.IDEMPOTENCY_KEY_REUSED
        table[command.request_id] = (command, result.outcome)
        if len(table) > WINDOW:
            table.popitem(last=False)


def _draw_command(data: Any, order_ids: list[int], keyed: list[KeyedCommand]) -> Command:
    kind = data.draw(
        st.sampled_from(["place", "cancel", "amend", "cancel_all", "mode", "retry", "reuse"])
    )
    account_id = data.draw(st.sampled_from(ACCOUNTS))
    request_id = data.draw(st.sampled_from(["", "r0", "r1", "r2", "r3", "r4", "r5"]))
    order_id = data.draw(st.sampled_from(order_ids)) if order_ids else 1
    if kind == "retry" and keyed:
        retried: KeyedCommand = data.draw(st.sampled_from(keyed))
        return retried
    if kind == "reuse" and keyed:  # the same key, another body
        original = data.draw(st.sampled_from(keyed))
        if isinstance(original, SetMarketMode):
            return SetMarketMode(
                symbol=original.symbol,
                mode=MarketMode.NORMAL
                if original.mode is not MarketMode.NORMAL
                else MarketMode.CANCEL_ONLY,
                operator_id=original.operator_id,
                request_id=original.request_id,
            )
        return CancelAllOrders(
            account_id=original.account_id, symbol="ETH-USDT", request_id=original.request_id
        )
    if kind == "cancel":
        return CancelOrder(account_id=account_id, order_id=order_id, request_id=request_id)
    if kind == "amend":
        return AmendOrder(
            account_id=account_id,
            order_id=order_id,
            price=data.draw(st.sampled_from([0, PRICE - TICK, PRICE + TICK])),
            quantity=data.draw(st.sampled_from([0, LOT, 3 * LOT])),
            request_id=request_id,
        )
    if kind == "cancel_all":
        return CancelAllOrders(account_id=account_id, request_id=request_id)
    if kind == "mode":
        return SetMarketMode(
            symbol="BTC-USDT",
            mode=data.draw(st.sampled_from([MarketMode.NORMAL, MarketMode.CANCEL_ONLY])),
            operator_id=data.draw(st.sampled_from(OPERATORS)),
            request_id=request_id or "m",
        )
    side = data.draw(st.sampled_from(list(Side)))
    offset = data.draw(st.integers(min_value=-2, max_value=3)) * TICK
    price = PRICE - offset if side is Side.BUY else PRICE + offset
    return limit_order(account_id, side, data.draw(st.sampled_from([LOT, 2 * LOT])), price)


async def _run(directory: Path, data: Any) -> None:
    clock = StepClock()
    model = WindowModel()
    keyed: list[KeyedCommand] = []
    order_ids: list[int] = []
    funding: list[Command] = [
        Deposit(account_id=account, asset=asset, amount=amount, transfer_id=f"f-{asset}")
        for account in ACCOUNTS
        for asset, amount in (("USDT", 10_000_000 * USDT), ("BTC", 100 * BTC))
    ]
    async with Sequencer.open(directory, clock=clock, options=OPTIONS) as sequencer:
        await sequencer.submit([*btc_usdt_setup_commands(), *funding])
        for _ in range(data.draw(st.integers(min_value=1, max_value=12), label="batches")):
            size = data.draw(st.integers(min_value=1, max_value=6))
            batch = [_draw_command(data, order_ids, keyed) for _ in range(size)]
            results = await sequencer.submit(batch)
            for command, result in zip(batch, results, strict=True):
                model.check(command, result)
                if isinstance(command, CancelOrder | CancelAllOrders | AmendOrder | SetMarketMode):
                    if command.request_id:
                        keyed.append(command)
                elif result.outcome.accepted and result.outcome.order_id:
                    order_ids.append(result.outcome.order_id)
            if data.draw(st.booleans(), label="snapshot"):
                await sequencer.snapshot()
        live_hash = sequencer.engine.state_hash()
        live_tables = (
            sequencer.engine._command_requests.copy_tables(),
            sequencer.engine._operator_requests.copy_tables(),
        )
    async with Sequencer.open(directory, clock=clock, options=OPTIONS) as reopened:
        engine = reopened.engine
        assert engine.state_hash() == live_hash
        assert reopened.replay_check().state_hash == live_hash
        tables = (engine._command_requests.copy_tables(), engine._operator_requests.copy_tables())
        assert tables == live_tables
        for table, live_table in zip(tables, live_tables, strict=True):
            for caller, entries in table.items():  # insertion (= eviction) order too
                assert list(entries) == list(live_table[caller])
        remembered = [record for entries in model.tables.values() for record in entries.values()]
        retries = await reopened.submit([command for command, _ in remembered])
        for (_, first_outcome), result in zip(remembered, retries, strict=True):
            assert result.duplicate
            assert result.outcome == first_outcome
        assert reopened.engine.state_hash() == live_hash


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_keyed_commands_replay_equal_to_live(data: Any) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run(Path(directory), data))
