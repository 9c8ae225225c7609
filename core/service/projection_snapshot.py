"""`CoreAdminService.GetProjectionSnapshot`: the state a market-data projection starts from
(docs/adr/0017).

Taken in ONE event-loop step (no await): the engine's assets, markets with their stream
seqs, the account stream's seq, every resting order in priority order and every balance, all
after command `engine_seq`, together with the outbox's acknowledged position in the events
partition. The engine applies only durable commands (the sequencer logs before it applies),
so the state can never be one a restart forgets. The position's round ends at or before
`engine_seq`, so every event of a later command lands at or after `resume_offset`; events
between the position and `engine_seq` are read again and skipped by their stream seqs.
"""

from __future__ import annotations

from collections.abc import Callable

from exchange.core.v1 import core_admin_pb2

from core.contracts import markets
from core.contracts.enums import SIDE
from core.engine import Engine, Side
from core.outbox import CORE_EVENTS_TOPIC, PublishedPosition

RESUME_OFFSET_UNKNOWN = -1


def projection_snapshot(
    engine: Engine,
    *,
    engine_seq: int,
    shard_id: str,
    position: PublishedPosition | None,
    clock_ns: Callable[[], int],
) -> core_admin_pb2.GetProjectionSnapshotResponse:
    response = core_admin_pb2.GetProjectionSnapshotResponse(
        shard_id=shard_id,
        engine_seq=engine_seq,
        account_stream_seq=engine.account_stream_seq(),
        events_topic=CORE_EVENTS_TOPIC if position is None else position.topic,
        resume_offset=RESUME_OFFSET_UNKNOWN,
    )
    if position is not None and position.engine_seq <= engine_seq:
        response.events_partition = position.partition
        response.resume_offset = position.next_offset
        response.published_engine_seq = position.engine_seq
    response.taken_at.FromNanoseconds(clock_ns())
    for asset, scale in engine.assets().items():
        response.assets.append(markets.asset_message(asset, scale))
    for symbol in engine.symbols():
        view = engine.market(symbol)
        if view is None:
            continue
        response.markets.add(market=markets.market_message(view), seq=view.seq)
        for side in (Side.BUY, Side.SELL):
            for order in engine.book_orders(symbol, side):
                response.orders.add(
                    order_id=str(order.order_id),
                    account_id=order.account_id,
                    client_order_id=order.client_order_id,
                    symbol=symbol,
                    side=SIDE.to_proto(side),
                    price=order.price,
                    remaining_quantity=order.quantity_remaining,
                )
    response.balances.extend(markets.engine_balance_message(view) for view in engine.all_balances())
    return response
