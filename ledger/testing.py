"""Testing helper: hand-built core event envelopes with consistent stream numbering.

Tests and benchmarks that do not run the engine build their events here. `EventStream`
numbers events like the core does: event ids `<shard>:<engine_seq>:<index>`, gap-free
`seq` per (shard, symbol), one engine_seq per call unless one is given.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from exchange.common.v1 import types_pb2 as common_pb2
from exchange.events.v1 import core_events_pb2, envelope_pb2

SHARD = "shard-1"
SYMBOL = "BTC-USDT"
TIMESTAMP_SECONDS_START = 1_700_000_000


@dataclass
class EventStream:
    """Makes envelopes for one shard; each `next_*` call is one command (engine_seq + 1)."""

    shard_id: str = SHARD
    epoch: int = 1
    engine_seq: int = 0
    _seqs: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    _trade_ids: int = 0

    def envelope(
        self, symbol: str, *, index: int = 0, engine_seq: int | None = None, **payload: object
    ) -> envelope_pb2.EventEnvelope:
        """One envelope with the next seq of `symbol`'s stream and exactly one payload."""
        if engine_seq is None:
            self.engine_seq += 1
            engine_seq = self.engine_seq
        self._seqs[symbol] += 1
        envelope = envelope_pb2.EventEnvelope(
            event_id=f"{self.shard_id}:{engine_seq}:{index}",
            event_version=1,
            symbol=symbol,
            seq=self._seqs[symbol],
            correlation_id=f"corr-{engine_seq}",
            causation_id=f"cmd-{engine_seq}",
            epoch=self.epoch,
            engine_seq=engine_seq,
            shard_id=self.shard_id,
            producer=envelope_pb2.PRODUCER_CORE,
            **payload,  # type: ignore[arg-type]
        )
        envelope.occurred_at.FromSeconds(TIMESTAMP_SECONDS_START + engine_seq)
        return envelope

    def deposit(self, account_id: str, asset: str, amount: int) -> envelope_pb2.EventEnvelope:
        transfer_id = f"deposit-{self.engine_seq + 1}"
        return self.envelope(
            "",
            funds_deposited=core_events_pb2.FundsDeposited(
                transfer_id=transfer_id, account_id=account_id, asset=asset, amount=amount
            ),
        )

    def withdraw(self, account_id: str, asset: str, amount: int) -> envelope_pb2.EventEnvelope:
        transfer_id = f"withdrawal-{self.engine_seq + 1}"
        return self.envelope(
            "",
            funds_withdrawn=core_events_pb2.FundsWithdrawn(
                transfer_id=transfer_id, account_id=account_id, asset=asset, amount=amount
            ),
        )

    def adjust(
        self, account_id: str, asset: str, amount: int, *, transfer_id: str = ""
    ) -> envelope_pb2.EventEnvelope:
        return self.envelope(
            "",
            balance_adjusted=core_events_pb2.BalanceAdjusted(
                transfer_id=transfer_id or f"adjustment-{self.engine_seq + 1}",
                account_id=account_id,
                asset=asset,
                amount=amount,
                memo="test adjustment",
                operator_id="operator-1",
            ),
        )

    def reserve(
        self, account_id: str, asset: str, amount: int, *, symbol: str = SYMBOL, order_id: str = ""
    ) -> envelope_pb2.EventEnvelope:
        return self.envelope(
            symbol,
            funds_reserved=core_events_pb2.FundsReserved(
                account_id=account_id, asset=asset, amount=amount, order_id=order_id
            ),
        )

    def release(
        self, account_id: str, asset: str, amount: int, *, symbol: str = SYMBOL, order_id: str = ""
    ) -> envelope_pb2.EventEnvelope:
        return self.envelope(
            symbol,
            funds_released=core_events_pb2.FundsReleased(
                account_id=account_id, asset=asset, amount=amount, order_id=order_id
            ),
        )

    def trade(
        self,
        *,
        buyer: str,
        seller: str,
        quantity: int,
        notional: int,
        buyer_fee: int = 0,
        seller_fee: int = 0,
        taker_side: int = common_pb2.SIDE_BUY,
        symbol: str = SYMBOL,
        base_asset: str = "BTC",
        quote_asset: str = "USDT",
        trade_id: str = "",
    ) -> envelope_pb2.EventEnvelope:
        self._trade_ids += 1
        taker_is_buyer = taker_side == common_pb2.SIDE_BUY
        return self.envelope(
            symbol,
            trade_executed=core_events_pb2.TradeExecuted(
                trade_id=trade_id or str(self._trade_ids),
                base_asset=base_asset,
                quote_asset=quote_asset,
                price=notional,
                quantity=quantity,
                quote_quantity=notional,
                taker_side=taker_side,  # type: ignore[arg-type]
                maker_account_id=seller if taker_is_buyer else buyer,
                taker_account_id=buyer if taker_is_buyer else seller,
                maker_fee=seller_fee if taker_is_buyer else buyer_fee,
                taker_fee=buyer_fee if taker_is_buyer else seller_fee,
            ),
        )

    def order_accepted(
        self, account_id: str, *, symbol: str = SYMBOL
    ) -> envelope_pb2.EventEnvelope:
        return self.envelope(
            symbol,
            order_accepted=core_events_pb2.OrderAccepted(
                order_id=str(self.engine_seq + 1), account_id=account_id
            ),
        )
