"""No float or double anywhere in the contracts: money and quantities are integers."""

from __future__ import annotations

import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tests.paths import PROTO_ROOT

_FLOATING = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_FLOAT_WRAPPERS = {"google.protobuf.FloatValue", "google.protobuf.DoubleValue"}


def test_no_float_or_double_field(all_messages: list[Descriptor]) -> None:
    offenders = [
        field.full_name
        for message in all_messages
        for field in message.fields
        if field.type in _FLOATING
        or (field.message_type is not None and field.message_type.full_name in _FLOAT_WRAPPERS)
    ]
    assert len(all_messages) > 100
    assert offenders == []


def test_no_float_keyword_in_proto_sources() -> None:
    # Belt and braces over the descriptors: also catches a float inside a map value or a
    # custom option, and keeps the word out of any future source.
    pattern = re.compile(r"^\s*(repeated\s+|optional\s+)?(float|double)\s+\w+\s*=", re.MULTILINE)
    map_pattern = re.compile(r"map<\s*\w+\s*,\s*(float|double)\s*>")
    offenders = [
        path.name
        for path in PROTO_ROOT.rglob("*.proto")
        if pattern.search(path.read_text()) or map_pattern.search(path.read_text())
    ]
    assert offenders == []


def test_amount_fields_are_signed_64_bit(all_messages: list[Descriptor]) -> None:
    # Amounts travel as int64 (JSON: decimal strings); a 32-bit amount would overflow.
    amount_names = {
        "price",
        "quantity",
        "quote_quantity",
        "amount",
        "available",
        "held",
        "balance",
        "fee",
        "maker_fee",
        "taker_fee",
        "volume",
        "quote_volume",
        "notional",
        "min_notional",
        "price_tick",
        "lot_step",
        "open",
        "high",
        "low",
        "close",
        "last",
    }
    offenders = [
        field.full_name
        for message in all_messages
        for field in message.fields
        if field.name in amount_names
        and field.type != FieldDescriptor.TYPE_MESSAGE
        and field.type != FieldDescriptor.TYPE_INT64
    ]
    assert offenders == []
