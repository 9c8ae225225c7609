"""Property: the real engine's random command streams (limit GTC/IOC/FOK, post-only, market
orders by quantity and by quote budget, every self-trade-prevention mode, amends, cancels,
cancel-alls, mode changes, funding, two markets), turned into envelopes by the core's own
mapping (core/contracts/events.py) and fed to the gateway's projection — in random fetch
batches, with redelivered batches — leave books equal to the engine's (`book_depth`: price,
quantity, order count, seq), balances equal to the engine's, and a chain of book diffs that
rebuilds each book from an empty one. A projection restored from the core's snapshot
(core/service/projection_snapshot.py) at any command, with the log read again from any
earlier command, ends equal to the engine too, its diffs still chaining (docs/adr/0017)."""

from __future__ import annotations

from collections.abc import Sequence

from exchange.events.v1.envelope_pb2 import EventEnvelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts.events import envelopes_for
from core.engine import (
    FEE_ACCOUNT_ID,
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    Engine,
    EngineConfig,
    MarketMode,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetMarketMode,
    Side,
    TimeInForce,
)
from core.engine.commands import Command
from core.engine.testing import BTC, USDT, EngineDriver, coarse_spec
from core.service.projection_snapshot import projection_snapshot
from gateway.market_data import projection as projection_module
from gateway.market_data.projection import MarketDataProjection, PublicUpdate

SHARD = "shard-1"
TICK = USDT
LOT = BTC // 100
ACCOUNTS = ("alice", "bob", "carol")
SPECS = {
    symbol: coarse_spec(symbol=symbol, base_asset=base)
    for symbol, base in (("BTC-USDT", "BTC"), ("ETH-USDT", "ETH"))
}

accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(sorted(SPECS))
sides = st.sampled_from(list(Side))
prices = st.integers(min_value=990, max_value=1_010).map(lambda ticks: ticks * TICK)
quantities = st.integers(min_value=1, max_value=30).map(lambda count: count * LOT)
order_refs = st.integers(min_value=0, max_value=60)
stp_modes = st.sampled_from(list(SelfTradePrevention))

places = st.builds(
    lambda a, symbol, side, q, p, tif, post_only, stp: PlaceOrder(
        account_id=a,
        symbol=symbol,
        side=side,
        quantity=q,
        price=p,
        time_in_force=tif,
        post_only=post_only and tif is TimeInForce.GTC,
        self_trade_prevention=stp,
    ),
    accounts,
    symbols,
    sides,
    quantities,
    prices,
    st.sampled_from(
        [TimeInForce.GTC, TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]
    ),
    st.booleans(),
    stp_modes,
)
market_orders = st.builds(
    lambda a, symbol, side, q, budget, stp: PlaceOrder(
        account_id=a,
        symbol=symbol,
        side=side,
        order_type=OrderType.MARKET,
        quantity=0 if budget and side is Side.BUY else q,
        quote_quantity=q * 1_000 if budget and side is Side.BUY else 0,
        time_in_force=TimeInForce.IOC,
        self_trade_prevention=stp,
    ),
    accounts,
    symbols,
    sides,
    quantities,
    st.booleans(),
    stp_modes,
)
_STEP_KINDS = (
    places,
    market_orders,
    st.builds(lambda a, ref: ("cancel", a, ref), accounts, order_refs),
    st.builds(
        lambda a, ref, q, p: ("amend", a, ref, q, p), accounts, order_refs, quantities, prices
    ),
    st.builds(lambda a, symbol: CancelAllOrders(account_id=a, symbol=symbol), accounts, symbols),
    st.builds(
        lambda symbol, mode: SetMarketMode(symbol=symbol, mode=mode),
        symbols,
        st.sampled_from([MarketMode.NORMAL, MarketMode.NORMAL, MarketMode.CANCEL_ONLY]),
    ),
    st.builds(
        lambda a, amount, kind: (kind, a, amount),
        accounts,
        st.integers(min_value=1, max_value=5_000 * USDT),
        st.sampled_from(["deposit", "adjust-down"]),
    ),
)
# Weights per kind above (one_of alone draws its branches about equally; hypothesis
# also shrinks toward the first): mostly placements, so books fill and trade.
_STEP_WEIGHTS = (12, 2, 2, 1, 1, 1, 1)
steps = st.sampled_from(
    [kind for kind, weight in zip(_STEP_KINDS, _STEP_WEIGHTS, strict=True) for _ in range(weight)]
).flatmap(lambda kind: kind)


def _concrete(step: object, order_ids: Sequence[int], number: int) -> Command:
    if not isinstance(step, tuple):
        return step  # type: ignore[return-value]
    kind, account_id = step[0], step[1]
    if kind == "cancel":
        return CancelOrder(account_id=account_id, order_id=order_ids[step[2] % len(order_ids)])
    if kind == "amend":
        return AmendOrder(
            account_id=account_id,
            order_id=order_ids[step[2] % len(order_ids)],
            quantity=step[3],
            price=step[4],
        )
    amount = step[2]
    if kind == "deposit":
        return Deposit(account_id=account_id, asset="USDT", amount=amount, transfer_id=f"t{number}")
    return AdjustBalance(
        account_id=account_id, asset="USDT", delta=-amount, transfer_id=f"t{number}", memo="p"
    )


def _run(step_list: Sequence[object]) -> tuple[Engine, list[list[EventEnvelope]]]:
    """The engine after the commands, and each command's envelopes."""
    driver = EngineDriver(Engine(EngineConfig(open_orders_max_per_account=40)))
    per_command: list[list[EventEnvelope]] = []

    def apply(command: Command) -> bool:
        result = driver.apply(command)
        per_command.append(
            envelopes_for(
                result.events,
                shard_id=SHARD,
                epoch=1,
                command=command,
                market_spec=SPECS.get,
            )
        )
        return result.outcome.accepted

    for asset, scale in (("BTC", 8), ("ETH", 8), ("USDT", 6)):
        apply(CreateAsset(asset=asset, scale=scale))
    for spec in SPECS.values():
        apply(CreateMarket(spec=spec))
    for account_id in ACCOUNTS:
        for asset, amount in (("USDT", 30_000 * USDT), ("BTC", 20 * BTC), ("ETH", 20 * BTC)):
            apply(
                Deposit(
                    account_id=account_id,
                    asset=asset,
                    amount=amount,
                    transfer_id=f"seed-{account_id}-{asset}",
                )
            )
    order_ids = [0]
    for number, step in enumerate(step_list):
        command = _concrete(step, order_ids, number)
        if apply(command) and isinstance(command, PlaceOrder):
            order_ids.append(driver.engine_seq_last)
    return driver.engine, per_command


Mirrors = dict[str, dict[str, dict[int, tuple[int, int]]]]


def _follow(updates: Sequence[object], last_seq: dict[str, int], mirrors: Mirrors) -> None:
    """A subscriber's books from the diffs: each must chain from the last seq seen."""
    for update in updates:
        if not (isinstance(update, PublicUpdate) and update.channel.startswith("book:")):
            continue
        diff = update.message.book_update
        assert diff.previous_seq == last_seq.get(diff.symbol, 0)
        assert diff.seq > diff.previous_seq
        last_seq[diff.symbol] = diff.seq
        mirror = mirrors.setdefault(diff.symbol, {"bids": {}, "asks": {}})
        for name in ("bids", "asks"):
            for level in getattr(diff, name):
                if level.quantity:
                    mirror[name][level.price] = (level.quantity, level.order_count)
                else:
                    mirror[name].pop(level.price, None)


def _assert_equals_engine(
    projection: MarketDataProjection, engine: Engine, last_seq: dict[str, int], mirrors: Mirrors
) -> None:
    assert projection.gaps_seen == 0
    for symbol in SPECS:
        expected = engine.book_depth(symbol, levels_max=10_000)
        book = projection.book(symbol)
        assert expected is not None
        assert book is not None
        assert book.seq == expected.seq
        assert last_seq.get(symbol, 0) == expected.seq
        assert _levels(book.levels(1, 10_000)) == _levels(expected.bids)
        assert _levels(book.levels(2, 10_000)) == _levels(expected.asks)
        mirror = mirrors.get(symbol, {"bids": {}, "asks": {}})
        rebuilt_bids = [(p, *mirror["bids"][p]) for p in sorted(mirror["bids"], reverse=True)]
        rebuilt_asks = [(p, *mirror["asks"][p]) for p in sorted(mirror["asks"])]
        assert rebuilt_bids == _levels(expected.bids)
        assert rebuilt_asks == _levels(expected.asks)
    for balance in engine.all_balances():
        assert projection.balance(balance.account_id, balance.asset) == (
            balance.available,
            balance.held,
        ), balance
    # Only live orders are kept.
    open_orders = sum(len(engine.open_orders(account_id)) for account_id in ACCOUNTS)
    assert projection.live_orders == open_orders


def _levels(levels: object) -> list[tuple[int, int, int]]:
    return [(level.price, level.quantity, level.order_count) for level in levels]  # type: ignore[attr-defined]


def test_the_fee_account_is_the_core_one() -> None:
    assert projection_module.FEE_ACCOUNT_ID == FEE_ACCOUNT_ID


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    step_list=st.lists(steps, min_size=30, max_size=150),
    cuts=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40),
    redeliver=st.lists(st.booleans(), min_size=1, max_size=40),
)
def test_projection_equals_the_engine(
    step_list: list[object], cuts: list[int], redeliver: list[bool]
) -> None:
    engine, per_command = _run(step_list)
    projection = MarketDataProjection()
    mirrors: Mirrors = {}  # rebuilt from diffs
    last_seq: dict[str, int] = {}
    # Fetch batches hold whole commands (the outbox publishes a command in one batch).
    position = 0
    batch_number = 0
    while position < len(per_command):
        size = cuts[batch_number % len(cuts)]
        batch = [
            envelope for command in per_command[position : position + size] for envelope in command
        ]
        updates = projection.apply_all(batch)
        if redeliver[batch_number % len(redeliver)]:
            assert projection.apply_all(batch) == []  # a redelivered batch changes nothing
        _follow(updates, last_seq, mirrors)
        position += size
        batch_number += 1
    _assert_equals_engine(projection, engine, last_seq, mirrors)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    step_list=st.lists(steps, min_size=20, max_size=120),
    cut=st.floats(min_value=0.0, max_value=1.0),
    overlap=st.integers(min_value=0, max_value=40),
    read_before=st.integers(min_value=0, max_value=200),
)
def test_a_projection_restored_from_a_snapshot_equals_the_engine(
    step_list: list[object], cut: float, overlap: int, read_before: int
) -> None:
    """The snapshot at command `n`; a running projection had read `read_before` commands
    (0: a fresh gateway); the log is read again from `n - overlap` (the resume offset lies
    at or before the snapshot's position)."""
    engine, per_command = _run(step_list)
    snapshot_engine, snapshot_commands = _run(step_list[: int(cut * len(step_list))])
    n = len(snapshot_commands)
    assert per_command[:n] == snapshot_commands  # the engine is deterministic
    snapshot = projection_snapshot(
        snapshot_engine,
        engine_seq=snapshot_engine.engine_seq_last,
        shard_id=SHARD,
        position=None,
        clock_ns=lambda: 0,
    )
    projection = MarketDataProjection()
    mirrors: Mirrors = {}
    last_seq: dict[str, int] = {}
    for command in per_command[: min(read_before, n)]:
        _follow(projection.apply_all(command), last_seq, mirrors)
    _follow(projection.restore(snapshot), last_seq, mirrors)
    for command in per_command[max(0, n - overlap) :]:
        _follow(projection.apply_all(command), last_seq, mirrors)
    _assert_equals_engine(projection, engine, last_seq, mirrors)
    replayed = MarketDataProjection()
    for command in per_command:
        replayed.apply_all(command)
    assert projection.open_orders() == replayed.open_orders()
