"""The journal payload format, the publish cursor file and the epoch override."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.contracts.event_wire import serialized_envelopes_for, varint
from core.contracts.events import (
    EventEnvelope,
    envelopes_for,
    market_specs_of,
)
from core.engine import Event, Side
from core.engine.testing import BTC, USDT, EngineDriver, limit_order
from core.outbox import (
    JournalFormatError,
    PublishCursorCorruptionError,
    decode_events,
    encode_events,
    read_cursor,
)
from core.outbox.cursor import write_cursor
from core.outbox.journal_format import encode_serialized_events
from core.outbox.publisher import epoch_override
from core.wal import EpochFence, FencedError, acquire_epoch


def trade_command() -> tuple[EngineDriver, list[Event]]:
    driver = EngineDriver()
    driver.bootstrap_btc_usdt()
    for account_id in ("a", "b"):
        driver.fund(account_id, "USDT", 10**6 * USDT)
        driver.fund(account_id, "BTC", 10 * BTC)
    driver.apply(limit_order("a", Side.SELL, BTC, 50_000 * USDT))
    result = driver.apply(limit_order("b", Side.BUY, BTC, 50_000 * USDT, client_order_id="x"))
    return driver, list(result.events)


def trade_envelopes() -> list[EventEnvelope]:
    driver, events = trade_command()
    return envelopes_for(events, shard_id="s", epoch=1, market_spec=market_specs_of(driver.engine))


def test_the_fast_path_journals_the_same_payload() -> None:
    driver, events = trade_command()
    serialized = serialized_envelopes_for(
        events, shard_id="s", epoch=1, market_spec=market_specs_of(driver.engine)
    )
    assert encode_serialized_events(events, serialized) == encode_events(trade_envelopes())
    with pytest.raises(JournalFormatError, match="events but"):
        encode_serialized_events(events, serialized[:-1])


def test_payload_round_trip_with_routing() -> None:
    envelopes = trade_envelopes()
    events = decode_events(encode_events(envelopes))
    assert [EventEnvelope.FromString(event.envelope) for event in events] == envelopes
    assert [event.is_trade for event in events] == [
        envelope.HasField("trade_executed") for envelope in envelopes
    ]
    assert any(event.is_trade for event in events)
    assert {event.symbol for event in events} == {"BTC-USDT"}
    assert decode_events(encode_events([])) == []


def test_malformed_payloads_are_named_errors() -> None:
    payload = encode_events(trade_envelopes())
    for bad in (b"", b"\x02" + payload[1:], payload[:-1], payload + b"\x00", payload[:7]):
        with pytest.raises(JournalFormatError):
            decode_events(bad)


def test_epoch_override_wins_over_the_journaled_epoch() -> None:
    envelope = trade_envelopes()[0]
    assert varint(300) == b"\xac\x02"
    for epoch in (0, 2, 127, 128, 2**40):
        patched = EventEnvelope.FromString(envelope.SerializeToString() + epoch_override(epoch))
        assert patched.epoch == epoch
        patched.epoch = envelope.epoch
        assert patched == envelope


def test_cursor_file_round_trip_fencing_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "publish.cursor"
    assert read_cursor(path) == 0
    fence = EpochFence(tmp_path, acquire_epoch(tmp_path))
    write_cursor(path, 41, fence)
    write_cursor(path, 42, fence)
    assert read_cursor(path) == 42
    acquire_epoch(tmp_path)  # a newer owner
    with pytest.raises(FencedError):
        write_cursor(path, 43, fence)
    assert read_cursor(path) == 42
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PublishCursorCorruptionError):
        read_cursor(path)
    path.write_bytes(b"short")
    with pytest.raises(PublishCursorCorruptionError):
        read_cursor(path)
    fence.close()
