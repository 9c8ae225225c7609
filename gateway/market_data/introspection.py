"""What the gateway's HTTP side answers at `/internal/market-data` (the consumer's progress:
ready, snapshots, records) and `/internal/market-data/state` (every book, balance and resting
order of the projection), for operators, tests and bench/projection_restart_bench.py. Envoy
routes neither (only `/ws` and the ext_authz prefix reach the gateway's HTTP side), and the
HTTP side listens on EDGE_HTTP_HOST (loopback by default)."""

from __future__ import annotations

from typing import Any

from gateway.market_data.consumer import EventLogConsumer
from gateway.market_data.projection import MarketDataProjection


def consumer_status(consumer: EventLogConsumer | None) -> dict[str, Any]:
    """`ready`: caught up with the event log, after a snapshot when there is a source."""
    if consumer is None:
        return {"ready": False, "broker": False}
    stats = consumer.stats
    return {
        "ready": stats.caught_up,
        "broker": True,
        "records": stats.records,
        "undecodable": stats.undecodable,
        "snapshots": stats.snapshots,
        "snapshots_retried": stats.snapshots_retried,
        "snapshot_engine_seq": stats.snapshot_engine_seq,
        "snapshot_offset": stats.snapshot_offset,
    }


def projection_state(projection: MarketDataProjection) -> dict[str, Any]:
    return {
        "books": {
            symbol: {
                "seq": book.seq,
                "mode": book.market.mode,
                "reference_price": book.market.reference_price,
                "bids": [[p, q, n] for p, (q, n) in sorted(book.bids.items(), reverse=True)],
                "asks": [[p, q, n] for p, (q, n) in sorted(book.asks.items())],
            }
            for symbol, book in sorted(projection.books.items())
        },
        "balances": [
            [account_id, asset, available, held]
            for (account_id, asset), (available, held) in sorted(projection.balances.items())
        ],
        "orders": [list(order) for order in projection.open_orders()],
        "assets": sorted(projection.assets),
        "events_applied": projection.events_applied,
        "duplicates_skipped": projection.duplicates_skipped,
        "gaps_seen": projection.gaps_seen,
    }
