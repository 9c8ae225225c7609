"""Stateful property test: the engine against a naive reference book.

The reference keeps resting orders in a plain list and, for every match, sorts the crossing
orders by (price, arrival) and takes the first: obviously price-time priority. It models
limit/market orders, GTC/IOC/FOK, post-only, the price band, self-trade prevention, cancel
and amend. Accounts are funded far beyond what they can trade, so balances never decide an
outcome here (test_engine_risk_invariants.py covers the risk side). After every command the
fills, the self-trade cancellations, the rejection reason and the whole book must agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import event as label_test_case
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.engine import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    CancelReason,
    Engine,
    OrderType,
    PlaceOrder,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.commands import Command
from core.engine.events import OrderCancelled, TradeExecuted
from core.engine.results import ApplyResult
from core.engine.testing import BTC, USDT, EngineDriver, btc_usdt_spec

SYMBOL = "BTC-USDT"
TICK = USDT  # 1 USDT
LOT = BTC // 100  # 0.01 BTC
REFERENCE_PRICE = 1_000 * TICK
BAND_BPS = 300
ACCOUNTS = ("alice", "bob", "carol")


@dataclass
class RefOrder:
    order_id: int
    account_id: str
    side: Side
    price: int
    quantity: int
    self_trade_prevention: SelfTradePrevention
    post_only: bool
    arrival: int
    filled: int = 0

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled


@dataclass
class RefResult:
    reason: RejectReason | None = None
    fills: list[tuple[int, int, int]] = field(default_factory=list)
    self_trade_cancelled: list[int] = field(default_factory=list)


@dataclass
class ReferenceBook:
    """Naive price-time book: a list, sorted on every use."""

    reference_price: int = REFERENCE_PRICE
    resting: list[RefOrder] = field(default_factory=list)
    closed: dict[str, set[int]] = field(default_factory=dict)
    arrivals: int = 0

    def next_arrival(self) -> int:
        self.arrivals += 1
        return self.arrivals

    def close(self, order: RefOrder) -> None:
        self.closed.setdefault(order.account_id, set()).add(order.order_id)

    def in_band(self, price: int) -> bool:
        low = self.reference_price * (10_000 - BAND_BPS)
        high = self.reference_price * (10_000 + BAND_BPS)
        return low <= price * 10_000 <= high

    def band_edge(self, side: Side) -> int:
        if side is Side.BUY:
            return self.reference_price * (10_000 + BAND_BPS) // 10_000
        return -((-self.reference_price * (10_000 - BAND_BPS)) // 10_000)

    def crossing(self, side: Side, limit: int) -> list[RefOrder]:
        if side is Side.BUY:
            asks = [o for o in self.resting if o.side is Side.SELL and o.price <= limit]
            return sorted(asks, key=lambda o: (o.price, o.arrival))
        bids = [o for o in self.resting if o.side is Side.BUY and o.price >= limit]
        return sorted(bids, key=lambda o: (-o.price, o.arrival))

    def match(
        self,
        account_id: str,
        side: Side,
        limit: int,
        quantity: int,
        stp: SelfTradePrevention,
        result: RefResult,
    ) -> tuple[int, bool]:
        """Returns (quantity left, stopped by self-trade prevention)."""
        remaining = quantity
        while remaining > 0:
            candidates = self.crossing(side, limit)
            if not candidates:
                break
            maker = candidates[0]
            if maker.account_id == account_id:
                if stp is SelfTradePrevention.CANCEL_NEWEST:
                    return remaining, True
                self.resting.remove(maker)
                self.close(maker)
                result.self_trade_cancelled.append(maker.order_id)
                if stp is SelfTradePrevention.CANCEL_BOTH:
                    return remaining, True
                continue
            quantity_traded = min(remaining, maker.remaining)
            maker.filled += quantity_traded
            remaining -= quantity_traded
            result.fills.append((maker.order_id, maker.price, quantity_traded))
            self.reference_price = maker.price
            if maker.remaining == 0:
                self.resting.remove(maker)
                self.close(maker)
        return remaining, False

    def place(self, order_id: int, command: PlaceOrder) -> RefResult:
        result = RefResult()
        side = command.side
        if command.order_type is OrderType.LIMIT:
            if command.post_only and command.time_in_force is not TimeInForce.GTC:
                result.reason = RejectReason.TIME_IN_FORCE_INVALID
                return result
            if not self.in_band(command.price):
                result.reason = RejectReason.PRICE_OUT_OF_BAND
                return result
            if command.post_only and self.crossing(side, command.price):
                result.reason = RejectReason.POST_ONLY_WOULD_TAKE
                return result
            limit = command.price
        else:
            if not any(o.side is not side for o in self.resting):
                result.reason = RejectReason.NO_LIQUIDITY
                return result
            limit = self.band_edge(side)
        stp = command.self_trade_prevention
        if command.time_in_force is TimeInForce.FOK:
            dry_run = copy.deepcopy(self)
            left, _ = dry_run.match(
                command.account_id, side, limit, command.quantity, stp, RefResult()
            )
            if left:
                result.reason = RejectReason.FOK_UNFILLABLE
                return result
        left, stopped = self.match(command.account_id, side, limit, command.quantity, stp, result)
        if stopped:
            result.self_trade_cancelled.append(order_id)
        rests = command.order_type is OrderType.LIMIT and command.time_in_force is TimeInForce.GTC
        order = RefOrder(
            order_id=order_id,
            account_id=command.account_id,
            side=side,
            price=command.price,
            quantity=command.quantity,
            self_trade_prevention=stp,
            post_only=command.post_only,
            arrival=self.next_arrival(),
            filled=command.quantity - left,
        )
        if left and not stopped and rests:
            self.resting.append(order)
        else:
            self.close(order)
        return result

    def find(self, account_id: str, order_id: int) -> tuple[RefOrder | None, RejectReason]:
        for order in self.resting:
            if order.order_id == order_id and order.account_id == account_id:
                return order, RejectReason.ORDER_NOT_FOUND
        if order_id in self.closed.get(account_id, set()):
            return None, RejectReason.ORDER_NOT_OPEN
        return None, RejectReason.ORDER_NOT_FOUND

    def cancel(self, account_id: str, order_id: int) -> RefResult:
        order, reason = self.find(account_id, order_id)
        if order is None:
            return RefResult(reason=reason)
        self.resting.remove(order)
        self.close(order)
        return RefResult()

    def cancel_all(self, account_id: str) -> RefResult:
        for order in [o for o in self.resting if o.account_id == account_id]:
            self.resting.remove(order)
            self.close(order)
        return RefResult()

    def amend(self, account_id: str, order_id: int, price: int, quantity: int) -> RefResult:
        order, reason = self.find(account_id, order_id)
        if order is None:
            return RefResult(reason=reason)
        if price != order.price and not self.in_band(price):
            return RefResult(reason=RejectReason.PRICE_OUT_OF_BAND)
        if quantity <= order.filled:
            return RefResult(reason=RejectReason.AMEND_INVALID)
        if price == order.price and quantity <= order.quantity:
            order.quantity = quantity
            return RefResult()
        if order.post_only and self.crossing(order.side, price):
            return RefResult(reason=RejectReason.POST_ONLY_WOULD_TAKE)
        self.resting.remove(order)
        order.price = price
        order.quantity = quantity
        result = RefResult()
        left, stopped = self.match(
            account_id, order.side, price, order.remaining, order.self_trade_prevention, result
        )
        order.filled = order.quantity - left
        if stopped:
            result.self_trade_cancelled.append(order_id)
        if left and not stopped:
            order.arrival = self.next_arrival()
            self.resting.append(order)
        else:
            self.close(order)
        return result

    def side_in_priority(self, side: Side) -> list[tuple[int, str, int, int]]:
        orders = [o for o in self.resting if o.side is side]
        if side is Side.BUY:
            orders.sort(key=lambda o: (-o.price, o.arrival))
        else:
            orders.sort(key=lambda o: (o.price, o.arrival))
        return [(o.order_id, o.account_id, o.price, o.remaining) for o in orders]


accounts = st.sampled_from(ACCOUNTS)
sides = st.sampled_from(list(Side))
# Mostly a narrow range, so queues form at a level and cross; sometimes a wide one, so the
# band rejects and market orders stop at its edge.
prices = st.one_of(
    st.integers(min_value=997, max_value=1_003),
    st.integers(min_value=997, max_value=1_003),
    st.integers(min_value=960, max_value=1_040),
).map(lambda ticks: ticks * TICK)
lots = st.integers(min_value=1, max_value=12).map(lambda count: count * LOT)
stps = st.sampled_from(list(SelfTradePrevention))


class EngineVersusReferenceBook(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = EngineDriver()
        self.driver.bootstrap_btc_usdt(
            btc_usdt_spec(
                price_tick=TICK,
                lot_step=LOT,
                min_quantity=LOT,
                min_notional=0,
                price_band_bps=BAND_BPS,
                reference_price=REFERENCE_PRICE,
            )
        )
        for account_id in ACCOUNTS:
            self.driver.fund(account_id, "USDT", 10**11 * USDT)
            self.driver.fund(account_id, "BTC", 10**6 * BTC)
        self.reference = ReferenceBook()
        self.shadow: Engine | None = None
        self.order_ids: list[int] = []

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
        return result

    def compare(self, result: ApplyResult, expected: RefResult) -> None:
        assert result.outcome.reason is expected.reason, (result.outcome, expected)
        fills = [
            (trade.maker_order_id, trade.price, trade.quantity)
            for trade in result.events
            if isinstance(trade, TradeExecuted)
        ]
        assert fills == expected.fills
        cancelled = [
            event.order_id
            for event in result.events
            if isinstance(event, OrderCancelled)
            and event.reason is CancelReason.SELF_TRADE_PREVENTION
        ]
        assert cancelled == expected.self_trade_cancelled

    @rule(
        account_id=accounts,
        side=sides,
        price=prices,
        quantity=lots,
        time_in_force=st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK]),
        post_only=st.sampled_from([False, False, True]),
        stp=stps,
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
    ) -> None:
        command = PlaceOrder(
            account_id=account_id,
            symbol=SYMBOL,
            side=side,
            quantity=quantity,
            price=price,
            time_in_force=time_in_force,
            post_only=post_only,
            self_trade_prevention=stp,
        )
        expected = self.reference.place(self.driver.engine_seq_last + 1, command)
        result = self.apply(command)
        self.compare(result, expected)
        self.order_ids.append(self.driver.engine_seq_last)

    @rule(
        account_id=accounts,
        side=sides,
        quantity=lots,
        time_in_force=st.sampled_from([TimeInForce.IOC, TimeInForce.FOK]),
        stp=stps,
    )
    def place_market(
        self,
        account_id: str,
        side: Side,
        quantity: int,
        time_in_force: TimeInForce,
        stp: SelfTradePrevention,
    ) -> None:
        command = PlaceOrder(
            account_id=account_id,
            symbol=SYMBOL,
            side=side,
            order_type=OrderType.MARKET,
            quantity=quantity,
            time_in_force=time_in_force,
            self_trade_prevention=stp,
        )
        expected = self.reference.place(self.driver.engine_seq_last + 1, command)
        self.compare(self.apply(command), expected)

    @rule(account_id=accounts, data=st.data())
    def cancel(self, account_id: str, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from([*self.order_ids, 10**9]))
        expected = self.reference.cancel(account_id, order_id)
        self.compare(self.apply(CancelOrder(account_id=account_id, order_id=order_id)), expected)

    @rule(account_id=accounts)
    def cancel_all(self, account_id: str) -> None:
        expected = self.reference.cancel_all(account_id)
        self.compare(self.apply(CancelAllOrders(account_id=account_id)), expected)

    @rule(account_id=accounts, price=prices, quantity=lots, data=st.data())
    def amend(self, account_id: str, price: int, quantity: int, data: st.DataObject) -> None:
        resting = self.reference.resting
        if resting and data.draw(st.integers(0, 3)) > 0:
            order = data.draw(st.sampled_from(resting))  # mostly one's own open order
            order_id, account_id = order.order_id, order.account_id
            if data.draw(st.booleans()):
                price = order.price  # exercise the keep-priority path
        else:
            order_id = data.draw(st.sampled_from([*self.order_ids, 10**9]))
        expected = self.reference.amend(account_id, order_id, price, quantity)
        command = AmendOrder(
            account_id=account_id, order_id=order_id, price=price, quantity=quantity
        )
        self.compare(self.apply(command), expected)

    @rule()
    def snapshot_and_restore(self) -> None:
        self.shadow = Engine.from_snapshot(self.driver.engine.snapshot())

    @invariant()
    def books_agree(self) -> None:
        engine = self.driver.engine
        for side in Side:
            got = [
                (o.order_id, o.account_id, o.price, o.quantity_remaining)
                for o in engine.book_orders(SYMBOL, side)
            ]
            assert got == self.reference.side_in_priority(side)
        market = engine.market(SYMBOL)
        assert market is not None
        assert market.reference_price == self.reference.reference_price

    @invariant()
    def engine_invariants_hold(self) -> None:
        self.driver.engine.check_invariants()

    @invariant()
    def restored_engine_matches(self) -> None:
        if self.shadow is not None:
            assert self.shadow.state_hash() == self.driver.engine.state_hash()


EngineVersusReferenceBook.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVersusReferenceBook = EngineVersusReferenceBook.TestCase
