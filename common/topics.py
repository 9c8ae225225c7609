"""Every topic of the event log, by name, and their explicit creation (docs/adr/0004).

One constant per topic, imported by its producer and by every consumer:

| topic | producer | key | read by |
|---|---|---|---|
| `core.events.v1` | the core's outbox | shard id | ledger, gateway projection |
| `core.trade-events.v1` | the core's outbox | symbol | streaming |
| `md.candles.v1`, `md.tickers.v1` | streaming | symbol | gateway |
| `ledger.events.v1` | the ledger's outbox | `ledger` (one stream) | downstream readers |

Topics are created explicitly, with their configs, before the first publish (it also keeps a
broker's auto-creation out of the picture). Creating a topic that exists is not an error,
so every start may do it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

CORE_EVENTS_TOPIC: Final = "core.events.v1"  # every core event, key = shard id
TRADE_EVENTS_TOPIC: Final = "core.trade-events.v1"  # TradeExecuted only, key = symbol
CANDLES_TOPIC: Final = "md.candles.v1"
TICKERS_TOPIC: Final = "md.tickers.v1"
LEDGER_EVENTS_TOPIC: Final = "ledger.events.v1"
RETENTION_MS_DEFAULT: Final = 7 * 24 * 3600 * 1000
ERROR_CODE_NONE: Final = 0
ERROR_CODE_TOPIC_ALREADY_EXISTS: Final = 36


class TopicCreationError(RuntimeError):
    """A topic could not be created."""


def _default_configs() -> dict[str, str]:
    return {"retention.ms": str(RETENTION_MS_DEFAULT), "cleanup.policy": "delete"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=_default_configs)

    def __post_init__(self) -> None:
        if not self.name or self.partitions < 1 or self.replication_factor < 1:
            raise ValueError(f"invalid topic spec {self}")


async def ensure_topics(
    bootstrap_servers: str, topics: Sequence[TopicSpec], *, request_timeout_ms: int
) -> None:
    """Create `topics` (an existing one is fine); raise `TopicCreationError` otherwise."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms
    )
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    topic.name,
                    num_partitions=topic.partitions,
                    replication_factor=topic.replication_factor,
                    topic_configs=dict(topic.configs),
                )
                for topic in topics
            ]
        )
    finally:
        await admin.close()
    for topic_error in response.topic_errors:
        name, error_code = topic_error[0], topic_error[1]
        if error_code not in (ERROR_CODE_NONE, ERROR_CODE_TOPIC_ALREADY_EXISTS):
            raise TopicCreationError(f"creating topic {name!r} failed with error code {error_code}")
