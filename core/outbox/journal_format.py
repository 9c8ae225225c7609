"""The payload of one outbox journal record: the events of ONE command, ready to publish.

A journal record's seq (core/wal record format) is the command's engine_seq; its epoch is
the epoch of the instance that wrote it. Payload (little-endian):

    offset  size  field
    0       1     format_version  u8 = 1
    1       4     event_count     u32 (0: the command produced no event)
    then event_count times:
            1     flags           u8, bit 0: TradeExecuted (also goes to core.trade-events.v1)
            1     symbol_bytes    u8 (<= 255; the engine allows 32)
            n     symbol          UTF-8 (the trade topic's key)
            4     envelope_bytes  u32
            m     envelope        a serialized exchange.events.v1.EventEnvelope

The symbol and the trade flag are copied out of the envelope so the publisher routes
records without parsing protobuf. Decoding refuses anything not exactly of this shape.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from core.contracts.events import EventEnvelope
from core.outbox.errors import JournalFormatError

JOURNAL_FORMAT_VERSION: Final = 1
FLAG_TRADE: Final = 0x01
_HEADER: Final = struct.Struct("<BI")
_EVENT_HEAD: Final = struct.Struct("<BB")
_LENGTH: Final = struct.Struct("<I")
SYMBOL_BYTES_MAX: Final = 255


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One envelope of a journal record, with what routing needs."""

    envelope: bytes
    symbol: str
    is_trade: bool


def encode_events(envelopes: Sequence[EventEnvelope]) -> bytes:
    """The journal payload of one command's envelopes (in order)."""
    parts = [_HEADER.pack(JOURNAL_FORMAT_VERSION, len(envelopes))]
    for envelope in envelopes:
        symbol = envelope.symbol.encode()
        if len(symbol) > SYMBOL_BYTES_MAX:
            raise JournalFormatError(f"symbol of {len(symbol)} bytes > {SYMBOL_BYTES_MAX}")
        flags = FLAG_TRADE if envelope.HasField("trade_executed") else 0
        body = envelope.SerializeToString()
        parts.append(_EVENT_HEAD.pack(flags, len(symbol)))
        parts.append(symbol)
        parts.append(_LENGTH.pack(len(body)))
        parts.append(body)
    return b"".join(parts)


def decode_events(payload: bytes) -> list[JournalEvent]:
    """The events of one journal payload; `JournalFormatError` if it is not well formed."""
    if len(payload) < _HEADER.size:
        raise JournalFormatError(f"payload of {len(payload)} bytes is shorter than its header")
    version, count = _HEADER.unpack_from(payload, 0)
    if version != JOURNAL_FORMAT_VERSION:
        raise JournalFormatError(f"unknown journal format version {version}")
    offset = _HEADER.size
    events: list[JournalEvent] = []
    try:
        for _ in range(count):
            flags, symbol_bytes = _EVENT_HEAD.unpack_from(payload, offset)
            offset += _EVENT_HEAD.size
            if flags & ~FLAG_TRADE:
                raise JournalFormatError(f"unknown flags {flags:#x}")
            symbol = payload[offset : offset + symbol_bytes].decode()
            offset += symbol_bytes
            (envelope_bytes,) = _LENGTH.unpack_from(payload, offset)
            offset += _LENGTH.size
            envelope = payload[offset : offset + envelope_bytes]
            if len(envelope) != envelope_bytes:
                raise JournalFormatError("truncated envelope")
            offset += envelope_bytes
            events.append(JournalEvent(envelope, symbol, bool(flags & FLAG_TRADE)))
    except (struct.error, UnicodeDecodeError) as error:
        raise JournalFormatError(f"malformed journal payload: {error}") from error
    if offset != len(payload):
        raise JournalFormatError(f"{len(payload) - offset} trailing bytes")
    return events
