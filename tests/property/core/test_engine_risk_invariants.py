"""Stateful property test: risk and accounting invariants under random commands.

Accounts hold small balances, so INSUFFICIENT_BALANCE, partial fills, quote-budget market
orders, amends that re-reserve, funding (with reused transfer ids), market modes and invalid
inputs all occur. The checks are computed here from public queries, independently of the
engine's own `check_invariants`:
- each asset's total (available + held over every account, fee account included) equals what
  funding put in minus what it took out;
- every account's held equals the reservation of its open orders; a sell reserves exactly its
  remaining quantity, a buy at least notional + taker fee of its remaining quantity;
- no balance is negative and the book is never crossed at rest;
- every event stream is numbered without gaps;
- an engine restored from a snapshot taken at a random point gives the same results and the
  same state hash as the engine that never stopped;
- a snapshot captured at a random point (`capture_snapshot()`) serializes, after any later
  commands, to exactly the bytes `snapshot()` gave at the capture.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import event as label_test_case
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.engine import (
    FEE_ACCOUNT_ID,
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Deposit,
    Engine,
    EngineConfig,
    MarketMode,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetMarketMode,
    Side,
    SnapshotCapture,
    TimeInForce,
    Withdraw,
)
from core.engine.commands import Command
from core.engine.results import ApplyResult
from core.engine.testing import BTC, USDT, EngineDriver, btc_usdt_spec

SYMBOL = "BTC-USDT"
TICK = USDT
LOT = BTC // 100
ACCOUNTS = ("alice", "bob", "carol")
ASSETS = ("BTC", "USDT")
TAKER_FEE_PPM = 2_500

accounts = st.sampled_from(ACCOUNTS)
sides = st.sampled_from(list(Side))
# Mostly valid values, sometimes anything (off tick / lot, out of band, zero, negative).
prices = st.one_of(
    st.integers(min_value=995, max_value=1_005).map(lambda ticks: ticks * TICK),
    st.integers(min_value=995, max_value=1_005).map(lambda ticks: ticks * TICK),
    st.integers(min_value=995, max_value=1_005).map(lambda ticks: ticks * TICK),
    st.integers(min_value=-1, max_value=1_200 * TICK),
)
quantities = st.one_of(
    st.integers(min_value=1, max_value=30).map(lambda count: count * LOT),
    st.integers(min_value=1, max_value=30).map(lambda count: count * LOT),
    st.integers(min_value=1, max_value=30).map(lambda count: count * LOT),
    st.integers(min_value=-1, max_value=40 * LOT),
)
limit_time_in_force = st.sampled_from([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK])
post_only = st.sampled_from([False, False, False, True])


class EngineRiskInvariants(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = EngineDriver(Engine(EngineConfig(open_orders_max_per_account=8)))
        self.driver.bootstrap_btc_usdt(
            btc_usdt_spec(
                price_tick=TICK,
                lot_step=LOT,
                min_quantity=LOT,
                min_notional=5 * USDT,
                price_band_bps=500,
                reference_price=1_000 * TICK,
                maker_fee_ppm=1_000,
                taker_fee_ppm=TAKER_FEE_PPM,
            )
        )
        self.supply = dict.fromkeys(ASSETS, 0)
        for account_id in ACCOUNTS:  # enough for a few orders, not for many
            self.driver.fund(account_id, "USDT", 30_000 * USDT)
            self.driver.fund(account_id, "BTC", 30 * BTC)
            self.supply["USDT"] += 30_000 * USDT
            self.supply["BTC"] += 30 * BTC
        self.stream_seqs: dict[str, int] = {"": 2 + 2 * len(ACCOUNTS), SYMBOL: 1}
        self.order_ids: list[int] = [10**9]
        self.shadow: Engine | None = None
        self.captured: tuple[SnapshotCapture, bytes] | None = None

    def apply(self, command: Command) -> ApplyResult:
        result = self.driver.apply(command)
        label_test_case(
            f"{type(command).__name__}: {result.outcome.reason or result.outcome.status}"
        )
        if self.shadow is not None:  # same engine_seq and time as the original
            assert (
                self.shadow.apply(
                    command,
                    engine_seq=self.driver.engine_seq_last,
                    timestamp_ns=self.driver.timestamp_ns,
                )
                == result
            )
        for event in result.events:
            assert event.seq == self.stream_seqs.get(event.symbol, 0) + 1, event
            self.stream_seqs[event.symbol] = event.seq
        return result

    # ------------------------------------------------------------------ funding

    @rule(
        account_id=accounts,
        asset=st.sampled_from(ASSETS),
        amount=st.integers(min_value=-5, max_value=100_000 * USDT),
        transfer_id=st.sampled_from(["t1", "t2", "t3", ""]),
        kind=st.sampled_from(["deposit", "withdraw", "adjust"]),
    )
    def funding(
        self, account_id: str, asset: str, amount: int, transfer_id: str, kind: str
    ) -> None:
        command: Deposit | Withdraw | AdjustBalance
        if kind == "deposit":
            command = Deposit(
                account_id=account_id, asset=asset, amount=amount, transfer_id=transfer_id
            )
            delta = amount
        elif kind == "withdraw":
            command = Withdraw(
                account_id=account_id, asset=asset, amount=amount, transfer_id=transfer_id
            )
            delta = -amount
        else:
            delta = amount if amount % 2 else -amount
            command = AdjustBalance(
                account_id=account_id, asset=asset, delta=delta, transfer_id=transfer_id
            )
        result = self.apply(command)
        if result.outcome.accepted and not result.duplicate:
            self.supply[asset] += delta

    # ------------------------------------------------------------------ orders

    @rule(
        account_id=accounts,
        side=sides,
        price=prices,
        quantity=quantities,
        time_in_force=limit_time_in_force,
        post_only=post_only,
        stp=st.sampled_from(list(SelfTradePrevention)),
        client_order_id=st.sampled_from(["", "", "", "c1", "c2"]),
    )
    def place_limit(
        self,
        account_id: str,
        side: Side,
        price: int,
        quantity: int,
        time_in_force: TimeInForce,
        post_only: bool,
        stp: SelfTradePrevention,
        client_order_id: str,
    ) -> None:
        self.apply(
            PlaceOrder(
                account_id=account_id,
                symbol=SYMBOL,
                side=side,
                quantity=quantity,
                price=price,
                time_in_force=time_in_force,
                post_only=post_only,
                self_trade_prevention=stp,
                client_order_id=client_order_id,
            )
        )
        self.order_ids.append(self.driver.engine_seq_last)

    @rule(
        account_id=accounts,
        side=sides,
        quantity=quantities,
        budget=st.one_of(st.just(0), st.integers(min_value=-1, max_value=30_000 * USDT)),
        time_in_force=st.sampled_from([TimeInForce.IOC] * 4 + [TimeInForce.FOK, TimeInForce.GTC]),
        stp=st.sampled_from(list(SelfTradePrevention)),
    )
    def place_market(
        self,
        account_id: str,
        side: Side,
        quantity: int,
        budget: int,
        time_in_force: TimeInForce,
        stp: SelfTradePrevention,
    ) -> None:
        self.apply(
            PlaceOrder(
                account_id=account_id,
                symbol=SYMBOL,
                side=side,
                order_type=OrderType.MARKET,
                quantity=0 if budget else quantity,
                quote_quantity=budget,
                time_in_force=time_in_force,
                self_trade_prevention=stp,
            )
        )

    @rule(account_id=accounts, data=st.data())
    def cancel(self, account_id: str, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.order_ids))
        self.apply(CancelOrder(account_id=account_id, order_id=order_id))

    @rule(account_id=accounts, client_order_id=st.sampled_from(["c1", "c2"]))
    def cancel_by_client_order_id(self, account_id: str, client_order_id: str) -> None:
        self.apply(CancelOrder(account_id=account_id, client_order_id=client_order_id))

    @rule(account_id=accounts, all_markets=st.booleans())
    def cancel_all(self, account_id: str, all_markets: bool) -> None:
        self.apply(CancelAllOrders(account_id=account_id, symbol="" if all_markets else SYMBOL))

    @rule(account_id=accounts, price=prices, quantity=quantities, data=st.data())
    def amend(self, account_id: str, price: int, quantity: int, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.order_ids))
        view = self.driver.engine.order(order_id)
        if view is not None and data.draw(st.booleans()):
            account_id = view.account_id  # mostly amend one's own order
            if data.draw(st.booleans()):
                price = view.price  # keep-priority path
        self.apply(
            AmendOrder(account_id=account_id, order_id=order_id, price=price, quantity=quantity)
        )

    @rule(
        mode=st.sampled_from([MarketMode.NORMAL] * 4 + [MarketMode.CANCEL_ONLY, MarketMode.HALTED])
    )
    def set_mode(self, mode: MarketMode) -> None:
        self.apply(SetMarketMode(symbol=SYMBOL, mode=mode))

    @rule()
    def snapshot_and_restore(self) -> None:
        self.shadow = Engine.from_snapshot(self.driver.engine.snapshot())

    @rule()
    def capture_snapshot(self) -> None:
        engine = self.driver.engine
        self.captured = (engine.capture_snapshot(), engine.snapshot())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def asset_totals_change_only_by_funding(self) -> None:
        totals = dict.fromkeys(ASSETS, 0)
        for balance in self.driver.engine.all_balances():
            assert balance.available >= 0
            assert balance.held >= 0
            totals[balance.asset] += balance.available + balance.held
        assert totals == self.supply
        assert self.driver.engine.balance(FEE_ACCOUNT_ID, "BTC").available == 0

    @invariant()
    def held_equals_open_order_exposure(self) -> None:
        engine = self.driver.engine
        for account_id in ACCOUNTS:
            exposure = dict.fromkeys(ASSETS, 0)
            for order in engine.open_orders(account_id):
                if order.side is Side.SELL:
                    assert order.reserved_amount == order.quantity_remaining
                    exposure["BTC"] += order.reserved_amount
                else:
                    # enough for the rest at the limit price plus the taker fee on it (the
                    # fee already rounded up on earlier fills can lower the ceiling by < 1)
                    notional = order.price * order.quantity_remaining // BTC
                    fee_floor = notional * TAKER_FEE_PPM // 1_000_000
                    assert order.reserved_amount >= notional + fee_floor
                    exposure["USDT"] += order.reserved_amount
            for asset in ASSETS:
                assert engine.balance(account_id, asset).held == exposure[asset]

    @invariant()
    def book_not_crossed(self) -> None:
        depth = self.driver.engine.book_depth(SYMBOL)
        assert depth is not None
        if depth.bids and depth.asks:
            assert depth.bids[0].price < depth.asks[0].price

    @invariant()
    def engine_invariants_hold(self) -> None:
        self.driver.engine.check_invariants()

    @invariant()
    def restored_engine_matches(self) -> None:
        if self.shadow is not None:
            assert self.shadow.state_hash() == self.driver.engine.state_hash()

    @invariant()
    def capture_serializes_to_the_snapshot_at_capture_time(self) -> None:
        if self.captured is not None:
            captured, expected = self.captured
            assert captured.serialize() == expected


EngineRiskInvariants.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineRiskInvariants = EngineRiskInvariants.TestCase
