"""Every event type travels in the one envelope, with the metadata the brief requires."""

from __future__ import annotations

from exchange.events.v1 import envelope_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

_ENVELOPE = envelope_pb2.EventEnvelope.DESCRIPTOR

_REQUIRED_METADATA = {
    "event_id": FieldDescriptor.TYPE_STRING,
    "event_version": FieldDescriptor.TYPE_UINT32,
    "symbol": FieldDescriptor.TYPE_STRING,
    "seq": FieldDescriptor.TYPE_UINT64,
    "occurred_at": FieldDescriptor.TYPE_MESSAGE,
    "correlation_id": FieldDescriptor.TYPE_STRING,
    "causation_id": FieldDescriptor.TYPE_STRING,
    "epoch": FieldDescriptor.TYPE_UINT64,
    "engine_seq": FieldDescriptor.TYPE_UINT64,
    "shard_id": FieldDescriptor.TYPE_STRING,
}


def _payload_types() -> list[Descriptor]:
    payload = _ENVELOPE.oneofs_by_name["payload"]
    types = [field.message_type for field in payload.fields]
    assert all(message is not None for message in types), "payload fields are messages"
    return [message for message in types if message is not None]


def _event_types(proto_files: list[FileDescriptor]) -> list[Descriptor]:
    return [
        message
        for file in proto_files
        if file.package == "exchange.events.v1"
        for message in file.message_types_by_name.values()
        if message.full_name != _ENVELOPE.full_name
    ]


def test_envelope_carries_the_required_metadata() -> None:
    fields = _ENVELOPE.fields_by_name
    actual = {name: fields[name].type for name in _REQUIRED_METADATA if name in fields}
    assert actual == _REQUIRED_METADATA
    timestamp = fields["occurred_at"].message_type
    assert timestamp is not None
    assert timestamp.full_name == "google.protobuf.Timestamp"


def test_every_event_type_is_in_the_payload_oneof(proto_files: list[FileDescriptor]) -> None:
    in_oneof = {message.full_name for message in _payload_types()}
    event_types = {message.full_name for message in _event_types(proto_files)}
    assert len(event_types) >= 25
    assert event_types - in_oneof == set(), "event types missing from the envelope"
    assert in_oneof - event_types == set(), "envelope payloads that are not events.v1 types"


def test_payload_oneof_holds_only_event_fields() -> None:
    payload_fields = {field.name for field in _ENVELOPE.oneofs_by_name["payload"].fields}
    metadata_fields = {field.name for field in _ENVELOPE.fields} - payload_fields
    assert set(_REQUIRED_METADATA) <= metadata_fields


def test_seed_events_exist() -> None:
    # The seeds name TradeExecuted (core.trade-events.v1) and CandleUpdated (WebSocket).
    payload_types = {message.name for message in _payload_types()}
    assert {"TradeExecuted", "CandleUpdated"} <= payload_types


def test_an_envelope_round_trips_with_its_payload() -> None:
    envelope = envelope_pb2.EventEnvelope(
        event_id="shard-0:42:0",
        event_version=1,
        symbol="BTC-USDT",
        seq=7,
        correlation_id="order-1",
        causation_id="cmd-42",
        epoch=3,
        engine_seq=42,
        shard_id="shard-0",
        producer=envelope_pb2.PRODUCER_CORE,
    )
    envelope.occurred_at.FromNanoseconds(1_700_000_000_123_456_789)
    envelope.trade_executed.trade_id = "T-1"
    envelope.trade_executed.quantity = 2**62
    decoded = envelope_pb2.EventEnvelope.FromString(envelope.SerializeToString())
    assert decoded == envelope
    assert decoded.WhichOneof("payload") == "trade_executed"
    assert decoded.occurred_at.ToNanoseconds() == 1_700_000_000_123_456_789
