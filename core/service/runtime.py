"""What every servicer shares: the sequencer behind its command intake, and the read models."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.outbox import PublishedPosition
from core.sequencer import Sequencer
from core.service.command_intake import CommandIntake
from core.service.historical_state import HistoricalStates
from core.service.history_sink import HistorySink
from core.service.idempotent_responses import IdempotentResponses
from core.service.order_history import OrderHistory
from core.service.transfer_history import TransferHistory


def _nothing_published() -> int:
    return 0


def _no_position() -> PublishedPosition | None:
    return None


@dataclass(slots=True, kw_only=True)
class CoreRuntime:
    shard_id: str
    sequencer: Sequencer
    intake: CommandIntake
    history_sink: HistorySink
    history: OrderHistory
    historical: HistoricalStates
    transfers: TransferHistory = field(default_factory=TransferHistory)
    responses: IdempotentResponses = field(default_factory=IdempotentResponses)
    clock: Callable[[], int] = time.time_ns
    # The outbox's published position, once one is wired (GetEngineStatus reports it).
    published_engine_seq: Callable[[], int] = _nothing_published
    # Where the outbox is in the events partition (GetProjectionSnapshot's resume offset).
    published_position: Callable[[], PublishedPosition | None] = _no_position

    @classmethod
    def create(
        cls, sequencer: Sequencer, history_sink: HistorySink, *, shard_id: str
    ) -> CoreRuntime:
        """The command intake around `sequencer`, opened with `history_sink` as its event sink
        (which feeds the order history, live and during recovery)."""
        return cls(
            shard_id=shard_id,
            sequencer=sequencer,
            intake=CommandIntake(sequencer),
            history_sink=history_sink,
            history=history_sink.history,
            historical=HistoricalStates(sequencer, history_sink),
        )
