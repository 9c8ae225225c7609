"""The trading core's outbox: its events, journaled durably and published to the event log.

`OutboxJournal` is the sequencer's event sink (`Sequencer.open(..., event_sink=journal)`);
`OutboxPublisher` publishes the journal to the Kafka-API broker at least once, in engine
order, from a durable cursor. See core/outbox/README.md.
"""

from __future__ import annotations

from common.topics import CORE_EVENTS_TOPIC, TRADE_EVENTS_TOPIC, TopicSpec, ensure_topics
from core.outbox.cursor import PUBLISH_CURSOR_NAME, read_cursor
from core.outbox.errors import (
    JournalFormatError,
    OutboxError,
    OutboxInvariantError,
    OutboxJournalFailedError,
    OutboxNotStartedError,
    OutboxOverloadedError,
    OutboxRecoveryError,
    PublishCursorCorruptionError,
)
from core.outbox.journal import JournalOptions, JournalReader, JournalRecovery, OutboxJournal
from core.outbox.journal_format import JournalEvent, decode_events, encode_events
from core.outbox.publisher import OutboxPublisher, PublishedPosition, PublisherOptions

__all__ = [
    "CORE_EVENTS_TOPIC",
    "PUBLISH_CURSOR_NAME",
    "TRADE_EVENTS_TOPIC",
    "JournalEvent",
    "JournalFormatError",
    "JournalOptions",
    "JournalReader",
    "JournalRecovery",
    "OutboxError",
    "OutboxInvariantError",
    "OutboxJournal",
    "OutboxJournalFailedError",
    "OutboxNotStartedError",
    "OutboxOverloadedError",
    "OutboxPublisher",
    "OutboxRecoveryError",
    "PublishCursorCorruptionError",
    "PublishedPosition",
    "PublisherOptions",
    "TopicSpec",
    "decode_events",
    "encode_events",
    "ensure_topics",
    "read_cursor",
]
