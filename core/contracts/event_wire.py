"""EventEnvelope bytes without envelope objects: the outbox's fast path (docs/adr/0007).

`EnvelopeSerializer(shard_id=..., epoch=..., market_spec=...)(events, command=...)` gives
`[e.SerializeToString() for e in envelopes_for(...)]` (core/contracts/events.py, the mapping
and the reference path) byte for byte, several times cheaper. The payloads come from the same
builders as the reference path (`payload_of`, `CommandFacts`) and upb serializes them; this
module writes the envelope around them by hand: `<field number << 3 | wire type>` tags,
base-128 varints, and length-delimited fields (`tag, varint length, bytes`). Fields are written
in field-number order and proto3 defaults (0, "") are left out, exactly as upb serializes an
EventEnvelope (tests/unit/core/contracts/test_events_serialized.py checks it on random engine
runs; the replay gate, tests/replay, digests these bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from exchange.events.v1 import envelope_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from core.contracts.events import (
    EVENT_VERSION,
    NANOSECONDS_PER_SECOND,
    CommandFacts,
    EnvelopeError,
    EventEnvelope,
    MarketSpecLookup,
    command_id,
    command_runs,
    correlation_id_for,
    payload_of,
)
from core.engine import Command, Event

_UINT64_MASK: Final = (1 << 64) - 1
_VARINT_ONE_BYTE: Final = tuple(bytes((value,)) for value in range(0x80))
_WIRE_VARINT: Final = 0
_WIRE_LENGTH_DELIMITED: Final = 2


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative int below 2**64."""
    if value < 0x80:
        if value < 0:
            raise ValueError(f"varint of {value}")
        return _VARINT_ONE_BYTE[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    if value < 0x800000000:  # seqs, nanos, seconds of a timestamp: up to 5 bytes, unrolled
        if value < 0x10000000:
            return (
                bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80))
                + _VARINT_ONE_BYTE[value >> 21]
            )
        return bytes(
            (
                value & 0x7F | 0x80,
                value >> 7 & 0x7F | 0x80,
                value >> 14 & 0x7F | 0x80,
                value >> 21 & 0x7F | 0x80,
                value >> 28,
            )
        )
    if value >> 64:
        raise ValueError(f"varint of {value} (>= 2**64)")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def _length_delimited(tag: bytes, data: bytes) -> bytes:
    size = len(data)
    return tag + (_VARINT_ONE_BYTE[size] if size < 0x80 else varint(size)) + data


def _string_field(tag: bytes, value: str) -> bytes:
    return _length_delimited(tag, value.encode()) if value else b""


def _varint_field(tag: bytes, value: int) -> bytes:
    return tag + varint(value) if value else b""


def _envelope_tag(name: str, wire_type: int) -> bytes:
    return field_tag(EventEnvelope.DESCRIPTOR.fields_by_name[name].number, wire_type)


_TAG_EVENT_ID: Final = _envelope_tag("event_id", _WIRE_LENGTH_DELIMITED)
_EVENT_VERSION_FIELD: Final = _envelope_tag("event_version", _WIRE_VARINT) + varint(EVENT_VERSION)
_TAG_SYMBOL: Final = _envelope_tag("symbol", _WIRE_LENGTH_DELIMITED)
_TAG_SEQ: Final = _envelope_tag("seq", _WIRE_VARINT)
_TAG_OCCURRED_AT: Final = _envelope_tag("occurred_at", _WIRE_LENGTH_DELIMITED)
_TAG_CORRELATION_ID: Final = _envelope_tag("correlation_id", _WIRE_LENGTH_DELIMITED)
_TAG_CAUSATION_ID: Final = _envelope_tag("causation_id", _WIRE_LENGTH_DELIMITED)
_TAG_EPOCH: Final = _envelope_tag("epoch", _WIRE_VARINT)
_TAG_ENGINE_SEQ: Final = _envelope_tag("engine_seq", _WIRE_VARINT)
_TAG_SHARD_ID: Final = _envelope_tag("shard_id", _WIRE_LENGTH_DELIMITED)
_PRODUCER_FIELD: Final = _envelope_tag("producer", _WIRE_VARINT) + varint(
    envelope_pb2.PRODUCER_CORE
)
_TAG_TIMESTAMP_SECONDS: Final = field_tag(1, _WIRE_VARINT)  # google.protobuf.Timestamp
_TAG_TIMESTAMP_NANOS: Final = field_tag(2, _WIRE_VARINT)
_PAYLOAD_TAGS: Final[dict[str, bytes]] = {
    field.name: field_tag(field.number, _WIRE_LENGTH_DELIMITED)
    for field in EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"].fields
}
_OCCURRED_AT_TYPE: Final = EventEnvelope.DESCRIPTOR.fields_by_name["occurred_at"].message_type
if _OCCURRED_AT_TYPE is None or _OCCURRED_AT_TYPE.full_name != Timestamp.DESCRIPTOR.full_name:
    # pragma: no cover  (a contract change the hand-written wire format must follow)
    raise EnvelopeError("EventEnvelope.occurred_at is no longer a google.protobuf.Timestamp")


def _occurred_at_field(timestamp_ns: int) -> bytes:
    # Always present (a set message field), even at the epoch; seconds is an int64.
    seconds, nanos = divmod(timestamp_ns, NANOSECONDS_PER_SECOND)
    timestamp = _varint_field(_TAG_TIMESTAMP_SECONDS, seconds & _UINT64_MASK) + _varint_field(
        _TAG_TIMESTAMP_NANOS, nanos
    )
    return _length_delimited(_TAG_OCCURRED_AT, timestamp)


class EnvelopeSerializer:
    """Serialized envelopes of one shard and epoch: `serializer(events, command=...)`.

    `serializer(events, command=command)` == `[e.SerializeToString() for e in
    envelopes_for(events, shard_id=..., epoch=..., command=command, market_spec=...)]`, byte
    for byte, with the same fields and errors, without building any envelope object. Per
    command, the fields every envelope of the command shares (occurred_at, correlation_id,
    causation_id, epoch, engine_seq, shard_id, producer: field numbers 5-11, contiguous) are
    encoded once; per event only event_id, symbol, seq and the payload (upb) are. It keeps
    the last command time and symbol it encoded, so use one per thread.
    """

    __slots__ = (
        "_epoch_field",
        "_market_spec",
        "_occurred_at",
        "_shard_field",
        "_shard_id",
        "_symbol_fields",
        "_timestamp_ns",
    )

    _SYMBOL_FIELDS_MAX: Final = 4096  # distinct symbols remembered (a shard has a few)

    def __init__(
        self, *, shard_id: str, epoch: int, market_spec: MarketSpecLookup | None = None
    ) -> None:
        self._shard_id = shard_id
        self._market_spec = market_spec
        self._shard_field = _string_field(_TAG_SHARD_ID, shard_id)
        self._epoch_field = _varint_field(_TAG_EPOCH, epoch)
        self._timestamp_ns: int | None = None
        self._occurred_at = b""
        self._symbol_fields: dict[str, bytes] = {}

    def __call__(self, events: Sequence[Event], *, command: Command | None = None) -> list[bytes]:
        serialized: list[bytes] = []
        append = serialized.append
        shard_id = self._shard_id
        market_spec = self._market_spec
        symbol_fields = self._symbol_fields
        payload_tags = _PAYLOAD_TAGS
        one_byte = _VARINT_ONE_BYTE
        for engine_seq, run in command_runs(events, command):
            facts = CommandFacts(command, engine_seq, run)
            causation_id = command_id(shard_id, engine_seq)
            correlation_id = correlation_id_for(command, shard_id=shard_id, engine_seq=engine_seq)
            after_occurred_at = b"".join(
                (
                    _string_field(_TAG_CORRELATION_ID, correlation_id),
                    _string_field(_TAG_CAUSATION_ID, causation_id),
                    self._epoch_field,
                    _varint_field(_TAG_ENGINE_SEQ, engine_seq),
                    self._shard_field,
                    _PRODUCER_FIELD,
                )
            )
            shared = b""
            event_id_prefix = causation_id + ":"  # event_id(shard_id, engine_seq, index)
            for index, event in enumerate(run):
                if not shared or event.timestamp_ns != self._timestamp_ns:
                    shared = self._occurred_at_of(event.timestamp_ns) + after_occurred_at
                symbol_field = symbol_fields.get(event.symbol)
                if symbol_field is None:
                    symbol_field = self._remember_symbol(event.symbol)
                name, payload = payload_of(event, facts, market_spec)
                body = payload.SerializeToString()
                body_size = len(body)
                append(
                    b"".join(
                        (
                            _length_delimited(_TAG_EVENT_ID, f"{event_id_prefix}{index}".encode()),
                            _EVENT_VERSION_FIELD,
                            symbol_field,
                            _varint_field(_TAG_SEQ, event.seq),
                            shared,
                            payload_tags[name],
                            one_byte[body_size] if body_size < 0x80 else varint(body_size),
                            body,
                        )
                    )
                )
        return serialized

    def _occurred_at_of(self, timestamp_ns: int) -> bytes:
        if timestamp_ns != self._timestamp_ns:  # consecutive commands often share a time
            self._timestamp_ns = timestamp_ns
            self._occurred_at = _occurred_at_field(timestamp_ns)
        return self._occurred_at

    def _remember_symbol(self, symbol: str) -> bytes:
        if len(self._symbol_fields) >= self._SYMBOL_FIELDS_MAX:
            self._symbol_fields.clear()
        field = self._symbol_fields[symbol] = _string_field(_TAG_SYMBOL, symbol)
        return field


def serialized_envelopes_for(
    events: Sequence[Event],
    *,
    shard_id: str,
    epoch: int,
    command: Command | None = None,
    market_spec: MarketSpecLookup | None = None,
) -> list[bytes]:
    """`[e.SerializeToString() for e in envelopes_for(...)]`, byte for byte (see
    `EnvelopeSerializer`, which a caller converting many commands should keep)."""
    return EnvelopeSerializer(shard_id=shard_id, epoch=epoch, market_spec=market_spec)(
        events, command=command
    )
