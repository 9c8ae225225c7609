"""Binary codec of engine commands for WAL record payloads.

Layout of one payload (format version 2):

    format_version u8 = 2
    command_tag    u8              (see COMMAND_TAGS; never renumbered)
    timestamp_ns   int             (the time the sequencer assigned; >= 0)
    fields ...                     (in the order of COMMAND_SCHEMAS, MarketSpec inlined)

Field encodings:
- int: one length byte n (0..INT_BYTES_MAX), then n bytes little-endian two's complement;
  n is canonical: 0 for zero, else the fewest bytes that hold the value. Any int that fits
  in INT_BYTES_MAX bytes encodes (out-of-range amounts must still be logged so replay reproduces
  the engine's AMOUNT_OUT_OF_RANGE rejection).
- str: varint byte length (at most STRING_BYTES_MAX), then UTF-8 (surrogates passed through).
- bool: one byte, 0 or 1.
- enum: one byte, its index in the enum's fixed code table (ENUM_CODES; append-only).

Invariants:
- Deterministic and canonical: equal commands with equal timestamps encode to equal bytes,
  and the decoder accepts only canonical bytes, so decode(b) == c implies encode(c) == b.
- Strict: an unknown format version or command tag, a truncated payload, trailing bytes,
  a non-canonical int, a bool other than 0/1, an unknown enum code or invalid UTF-8 raises a
  named `CodecError` subclass; nothing is guessed.
- The schema covers every field of every command dataclass; this is checked at import time,
  so adding a field to a command without a new format version fails loudly.

Versions: 2 added `request_id` to CancelOrder, CancelAllOrders and AmendOrder, and
`operator_id`, `request_id` to SetMarketMode (ADR 0016); the encoder writes version 2 only.
Version 1 payloads (WALs written before) still decode, by `COMMAND_SCHEMAS_V1`, with those
fields empty; canonicality (decode(b) == c implies encode(c) == b) holds per version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from core.engine.commands import (
    AdjustBalance,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetMarketMode,
    Withdraw,
)
from core.engine.enums import MarketMode, OrderType, SelfTradePrevention, Side, TimeInForce
from core.engine.market import MarketSpec

FORMAT_VERSION: Final = 2
FORMAT_VERSION_V1: Final = 1
INT_BYTES_MAX: Final = 16  # signed 128-bit: far beyond int64, the API's range
STRING_BYTES_MAX: Final = 65_536
VARINT_BYTES_MAX: Final = 3  # enough for STRING_BYTES_MAX


class CodecError(ValueError):
    """A command could not be encoded or a payload could not be decoded."""


class UnknownFormatVersionError(CodecError):
    """The payload's first byte is not a format version this codec reads."""


class UnknownCommandTypeError(CodecError):
    """The payload's command tag, or the object to encode, is not a known command type."""


class MalformedPayloadError(CodecError):
    """The payload is truncated, has trailing bytes or a non-canonical / invalid field."""


class CommandEncodeError(CodecError):
    """A field value is outside what the format can carry (int or string too large)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedCommand:
    command: Command
    timestamp_ns: int


# Append-only tables: a tag or code, once released, keeps its meaning forever.
COMMAND_TAGS: Final[dict[type[Any], int]] = {
    CreateAsset: 1,
    CreateMarket: 2,
    SetMarketMode: 3,
    Deposit: 4,
    Withdraw: 5,
    AdjustBalance: 6,
    PlaceOrder: 7,
    CancelOrder: 8,
    CancelAllOrders: 9,
    AmendOrder: 10,
}

ENUM_CODES: Final[dict[type[Enum], tuple[Enum, ...]]] = {
    Side: (Side.BUY, Side.SELL),
    OrderType: (OrderType.LIMIT, OrderType.MARKET),
    TimeInForce: (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK),
    SelfTradePrevention: (
        SelfTradePrevention.CANCEL_NEWEST,
        SelfTradePrevention.CANCEL_OLDEST,
        SelfTradePrevention.CANCEL_BOTH,
    ),
    MarketMode: (MarketMode.NORMAL, MarketMode.CANCEL_ONLY, MarketMode.HALTED),
}

# Field kinds: "int", "str", "bool", an Enum class, or MarketSpec (a nested record).
FieldKind = str | type[Enum] | type[MarketSpec]

MARKET_SPEC_SCHEMA: Final[tuple[tuple[str, FieldKind], ...]] = (
    ("symbol", "str"),
    ("base_asset", "str"),
    ("quote_asset", "str"),
    ("base_scale", "int"),
    ("quote_scale", "int"),
    ("price_tick", "int"),
    ("lot_step", "int"),
    ("min_quantity", "int"),
    ("max_quantity", "int"),
    ("min_notional", "int"),
    ("price_band_bps", "int"),
    ("maker_fee_ppm", "int"),
    ("taker_fee_ppm", "int"),
    ("reference_price", "int"),
)

COMMAND_SCHEMAS: Final[dict[type[Any], tuple[tuple[str, FieldKind], ...]]] = {
    CreateAsset: (("asset", "str"), ("scale", "int")),
    CreateMarket: (("spec", MarketSpec),),
    SetMarketMode: (
        ("symbol", "str"),
        ("mode", MarketMode),
        ("operator_id", "str"),
        ("request_id", "str"),
    ),
    Deposit: (("account_id", "str"), ("asset", "str"), ("amount", "int"), ("transfer_id", "str")),
    Withdraw: (
        ("account_id", "str"),
        ("asset", "str"),
        ("amount", "int"),
        ("transfer_id", "str"),
    ),
    AdjustBalance: (
        ("account_id", "str"),
        ("asset", "str"),
        ("delta", "int"),
        ("transfer_id", "str"),
        ("memo", "str"),
    ),
    PlaceOrder: (
        ("account_id", "str"),
        ("symbol", "str"),
        ("side", Side),
        ("order_type", OrderType),
        ("quantity", "int"),
        ("price", "int"),
        ("quote_quantity", "int"),
        ("time_in_force", TimeInForce),
        ("post_only", "bool"),
        ("self_trade_prevention", SelfTradePrevention),
        ("client_order_id", "str"),
    ),
    CancelOrder: (
        ("account_id", "str"),
        ("order_id", "int"),
        ("client_order_id", "str"),
        ("request_id", "str"),
    ),
    CancelAllOrders: (("account_id", "str"), ("symbol", "str"), ("request_id", "str")),
    AmendOrder: (
        ("account_id", "str"),
        ("price", "int"),
        ("quantity", "int"),
        ("order_id", "int"),
        ("client_order_id", "str"),
        ("request_id", "str"),
    ),
}
_ADDED_IN_V2: Final = frozenset({"request_id", "operator_id"})
COMMAND_SCHEMAS_V1: Final[dict[type[Any], tuple[tuple[str, FieldKind], ...]]] = {
    cls: tuple(field for field in schema if field[0] not in _ADDED_IN_V2)
    for cls, schema in COMMAND_SCHEMAS.items()
}
"""Version 1 payloads: the fields above without the ones version 2 added."""


def _check_schemas() -> None:
    """Raise if a schema misses or misnames a dataclass field (an invariant of this module)."""
    targets: list[tuple[type[Any], tuple[tuple[str, FieldKind], ...]]] = [
        *COMMAND_SCHEMAS.items(),
        (MarketSpec, MARKET_SPEC_SCHEMA),
    ]
    for cls, schema in targets:
        declared = tuple(field.name for field in dataclasses.fields(cls))
        if tuple(sorted(declared)) != tuple(sorted(name for name, _ in schema)):
            raise RuntimeError(f"codec schema of {cls.__name__} does not match its fields")
    if set(COMMAND_TAGS) != set(COMMAND_SCHEMAS):
        raise RuntimeError("codec command tags and schemas disagree")
    if len(set(COMMAND_TAGS.values())) != len(COMMAND_TAGS):
        raise RuntimeError("duplicate codec command tag")
    for enum_cls, codes in ENUM_CODES.items():
        if set(codes) != set(enum_cls) or len(codes) != len(set(codes)):
            raise RuntimeError(f"codec codes of {enum_cls.__name__} do not cover its members")


_check_schemas()

_TAG_TO_TYPE: Final[dict[int, type[Any]]] = {tag: cls for cls, tag in COMMAND_TAGS.items()}
_ENUM_TO_CODE: Final[dict[Enum, int]] = {
    member: code for codes in ENUM_CODES.values() for code, member in enumerate(codes)
}


# ---------------------------------------------------------------------- encoding


def _int_length(value: int) -> int:
    """Minimal two's-complement byte count (0 for zero)."""
    if value == 0:
        return 0
    magnitude_bits = (value if value > 0 else ~value).bit_length()
    return (magnitude_bits + 8) // 8


def _encode_int(out: bytearray, value: int, name: str) -> None:
    if type(value) is not int:
        raise CommandEncodeError(f"{name}: expected int, got {type(value).__name__}")
    length = _int_length(value)
    if length > INT_BYTES_MAX:
        raise CommandEncodeError(f"{name}: int needs {length} bytes > {INT_BYTES_MAX}")
    out.append(length)
    out += value.to_bytes(length, "little", signed=True)


def _encode_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _encode_str(out: bytearray, value: str, name: str) -> None:
    if type(value) is not str:
        raise CommandEncodeError(f"{name}: expected str, got {type(value).__name__}")
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > STRING_BYTES_MAX:
        raise CommandEncodeError(f"{name}: {len(data)} UTF-8 bytes > {STRING_BYTES_MAX}")
    _encode_varint(out, len(data))
    out += data


def _encode_fields(
    out: bytearray, value: object, schema: tuple[tuple[str, FieldKind], ...]
) -> None:
    for name, kind in schema:
        field_value = getattr(value, name)
        if kind == "int":
            _encode_int(out, field_value, name)
        elif kind == "str":
            _encode_str(out, field_value, name)
        elif kind == "bool":
            if type(field_value) is not bool:
                raise CommandEncodeError(f"{name}: expected bool")
            out.append(1 if field_value else 0)
        elif kind is MarketSpec:
            if type(field_value) is not MarketSpec:
                raise CommandEncodeError(f"{name}: expected MarketSpec")
            _encode_fields(out, field_value, MARKET_SPEC_SCHEMA)
        else:
            code = _ENUM_TO_CODE.get(field_value) if isinstance(field_value, Enum) else None
            if code is None or type(field_value) is not kind:
                raise CommandEncodeError(f"{name}: expected {kind!r}, got {field_value!r}")
            out.append(code)


def encode_command(command: Command, *, timestamp_ns: int) -> bytes:
    """Encode `command` and the time the sequencer assigned it into one WAL payload.

    The hot command types take a specialized encoder (`FAST_ENCODERS`, below); anything it
    does not handle plainly (a wrong type, an out-of-range value) goes the generic way, which
    gives the same bytes or the named error.
    """
    fast = FAST_ENCODERS.get(type(command))
    if fast is not None and type(timestamp_ns) is int and timestamp_ns >= 0:
        try:
            return fast(command, timestamp_ns)
        except FastPathUnavailable:
            pass
    return encode_command_generic(command, timestamp_ns=timestamp_ns)


def encode_command_generic(command: Command, *, timestamp_ns: int) -> bytes:
    """`encode_command` by a walk of COMMAND_SCHEMAS: the reference the fast encoders match."""
    tag = COMMAND_TAGS.get(type(command))
    if tag is None:
        raise UnknownCommandTypeError(f"not an engine command: {type(command).__name__}")
    if type(timestamp_ns) is not int or timestamp_ns < 0:
        raise CommandEncodeError(f"timestamp_ns must be a non-negative int, got {timestamp_ns!r}")
    out = bytearray((FORMAT_VERSION, tag))
    _encode_int(out, timestamp_ns, "timestamp_ns")
    _encode_fields(out, command, COMMAND_SCHEMAS[type(command)])
    return bytes(out)


# ---------------------------------------------------------------------- fast encoders
#
# Specialized encoders of the hot commands (the streaming order entry's places, cancels and
# amends): the same bytes as `encode_command_generic`, built from precomputed pieces without
# the schema walk. They handle only plain values (exact types, ints of at most INT_BYTES_MAX
# bytes, strings of at most STRING_BYTES_MAX bytes) and raise `FastPathUnavailable` for
# anything else, so every error keeps coming from the generic path.
# tests/integration/core/sequencer/test_sequencer_codec_fast.py checks byte equality.


class FastPathUnavailable(Exception):  # noqa: N818  (a signal, not an error)
    """A fast encoder cannot encode this value plainly; use the generic path."""


_LENGTH_BYTE: Final = tuple(bytes((length,)) for length in range(128))
# Bounded caches of encodings of values that repeat (account ids, symbols, prices,
# quantities); cleared when full.
CACHE_ENTRIES_MAX: Final = 4_096
_string_cache: dict[str, bytes] = {}
_int_cache: dict[int, bytes] = {}


def _fast_int(value: int) -> bytes:
    """The int field encoding of an exact int (the caller checked its type)."""
    if value == 0:
        return b"\x00"
    length = ((value if value > 0 else ~value).bit_length() + 8) >> 3
    if length > INT_BYTES_MAX:
        raise FastPathUnavailable
    return _LENGTH_BYTE[length] + value.to_bytes(length, "little", signed=True)


def _fast_cached_int(value: int) -> bytes:
    """`_fast_int` through the cache (callers try `_int_cache.get` first, inline)."""
    encoded = _fast_int(value)
    if len(_int_cache) >= CACHE_ENTRIES_MAX:
        _int_cache.clear()
    _int_cache[value] = encoded
    return encoded


def _fast_str(value: str) -> bytes:
    """The str field encoding of an exact str (the caller checked its type)."""
    data = value.encode("utf-8", "surrogatepass")
    length = len(data)
    if length < 0x80:
        return _LENGTH_BYTE[length] + data
    if length > STRING_BYTES_MAX:
        raise FastPathUnavailable
    out = bytearray()
    _encode_varint(out, length)
    out += data
    return bytes(out)


def _fast_cached_str(value: str) -> bytes:
    """`_fast_str` through the cache (callers try `_string_cache.get` first, inline)."""
    encoded = _fast_str(value)
    if len(_string_cache) >= CACHE_ENTRIES_MAX:
        _string_cache.clear()
    _string_cache[value] = encoded
    return encoded


def _code_bytes(enum_cls: type[Enum]) -> dict[Enum, bytes]:
    return {member: bytes((code,)) for code, member in enumerate(ENUM_CODES[enum_cls])}


_SIDE_BYTES: Final = _code_bytes(Side)
_ORDER_TYPE_BYTES: Final = _code_bytes(OrderType)
_TIME_IN_FORCE_BYTES: Final = _code_bytes(TimeInForce)
_STP_BYTES: Final = _code_bytes(SelfTradePrevention)
_BOOL_BYTES: Final = {False: b"\x00", True: b"\x01"}


def _head(command_type: type[Any]) -> bytes:
    return bytes((FORMAT_VERSION, COMMAND_TAGS[command_type]))


_PLACE_ORDER_HEAD: Final = _head(PlaceOrder)
_CANCEL_ORDER_HEAD: Final = _head(CancelOrder)
_AMEND_ORDER_HEAD: Final = _head(AmendOrder)


def _encode_place_order(command: PlaceOrder, timestamp_ns: int) -> bytes:
    account_id = command.account_id
    symbol = command.symbol
    side = command.side
    order_type = command.order_type
    quantity = command.quantity
    price = command.price
    quote_quantity = command.quote_quantity
    time_in_force = command.time_in_force
    post_only = command.post_only
    self_trade_prevention = command.self_trade_prevention
    client_order_id = command.client_order_id
    # StrEnum members equal their names, so the tables alone would take a plain str: the
    # exact types are checked first.
    if not (
        type(account_id) is str
        and type(symbol) is str
        and type(side) is Side
        and type(order_type) is OrderType
        and type(quantity) is int
        and type(price) is int
        and type(quote_quantity) is int
        and type(time_in_force) is TimeInForce
        and type(post_only) is bool
        and type(self_trade_prevention) is SelfTradePrevention
        and type(client_order_id) is str
    ):
        raise FastPathUnavailable
    strings = _string_cache
    ints = _int_cache
    return b"".join(
        (
            _PLACE_ORDER_HEAD,
            _fast_int(timestamp_ns),
            strings.get(account_id) or _fast_cached_str(account_id),
            strings.get(symbol) or _fast_cached_str(symbol),
            _SIDE_BYTES[side],
            _ORDER_TYPE_BYTES[order_type],
            ints.get(quantity) or _fast_cached_int(quantity),
            ints.get(price) or _fast_cached_int(price),
            ints.get(quote_quantity) or _fast_cached_int(quote_quantity),
            _TIME_IN_FORCE_BYTES[time_in_force],
            _BOOL_BYTES[post_only],
            _STP_BYTES[self_trade_prevention],
            _fast_str(client_order_id),
        )
    )


def _encode_cancel_order(command: CancelOrder, timestamp_ns: int) -> bytes:
    account_id = command.account_id
    order_id = command.order_id
    client_order_id = command.client_order_id
    request_id = command.request_id
    if not (
        type(account_id) is str
        and type(order_id) is int
        and type(client_order_id) is str
        and type(request_id) is str
    ):
        raise FastPathUnavailable
    return b"".join(
        (
            _CANCEL_ORDER_HEAD,
            _fast_int(timestamp_ns),
            _string_cache.get(account_id) or _fast_cached_str(account_id),
            _fast_int(order_id),
            _fast_str(client_order_id),
            _fast_str(request_id),
        )
    )


def _encode_amend_order(command: AmendOrder, timestamp_ns: int) -> bytes:
    account_id = command.account_id
    price = command.price
    quantity = command.quantity
    order_id = command.order_id
    client_order_id = command.client_order_id
    request_id = command.request_id
    if not (
        type(account_id) is str
        and type(price) is int
        and type(quantity) is int
        and type(order_id) is int
        and type(client_order_id) is str
        and type(request_id) is str
    ):
        raise FastPathUnavailable
    return b"".join(
        (
            _AMEND_ORDER_HEAD,
            _fast_int(timestamp_ns),
            _string_cache.get(account_id) or _fast_cached_str(account_id),
            _int_cache.get(price) or _fast_cached_int(price),
            _int_cache.get(quantity) or _fast_cached_int(quantity),
            _fast_int(order_id),
            _fast_str(client_order_id),
            _fast_str(request_id),
        )
    )


FAST_ENCODERS: Final[dict[type[Any], Callable[[Any, int], bytes]]] = {
    PlaceOrder: _encode_place_order,
    CancelOrder: _encode_cancel_order,
    AmendOrder: _encode_amend_order,
}
"""Command type -> specialized encoder (command, timestamp_ns) -> payload; raises
`FastPathUnavailable` for what only the generic path encodes."""


def _check_fast_field_orders() -> None:
    """The fast encoders hard-code the field order: raise if the schema moved under them."""
    expected = {
        PlaceOrder: (
            "account_id symbol side order_type quantity price quote_quantity time_in_force "
            "post_only self_trade_prevention client_order_id"
        ),
        CancelOrder: "account_id order_id client_order_id request_id",
        AmendOrder: "account_id price quantity order_id client_order_id request_id",
    }
    for cls, names in expected.items():
        if tuple(name for name, _ in COMMAND_SCHEMAS[cls]) != tuple(names.split()):
            raise RuntimeError(f"fast encoder of {cls.__name__} does not follow its schema")


_check_fast_field_orders()


# ---------------------------------------------------------------------- decoding


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def byte(self, name: str) -> int:
        if self.offset >= len(self.data):
            raise MalformedPayloadError(f"{name}: payload truncated at byte {self.offset}")
        value = self.data[self.offset]
        self.offset += 1
        return value

    def take(self, length: int, name: str) -> bytes:
        end = self.offset + length
        if end > len(self.data):
            raise MalformedPayloadError(f"{name}: payload truncated at byte {self.offset}")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def int_field(self, name: str) -> int:
        length = self.byte(name)
        if length > INT_BYTES_MAX:
            raise MalformedPayloadError(f"{name}: int length {length} > {INT_BYTES_MAX}")
        value = int.from_bytes(self.take(length, name), "little", signed=True)
        if _int_length(value) != length:
            raise MalformedPayloadError(f"{name}: non-canonical int encoding")
        return value

    def varint(self, name: str) -> int:
        value = 0
        for index in range(VARINT_BYTES_MAX):
            byte = self.byte(name)
            value |= (byte & 0x7F) << (7 * index)
            if byte < 0x80:
                if byte == 0 and index > 0:
                    raise MalformedPayloadError(f"{name}: non-canonical length")
                return value
        raise MalformedPayloadError(f"{name}: length longer than {VARINT_BYTES_MAX} bytes")

    def str_field(self, name: str) -> str:
        length = self.varint(name)
        if length > STRING_BYTES_MAX:
            raise MalformedPayloadError(f"{name}: string of {length} bytes > {STRING_BYTES_MAX}")
        try:
            return self.take(length, name).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as error:
            raise MalformedPayloadError(f"{name}: invalid UTF-8: {error}") from error


def _decode_fields(
    reader: _Reader, cls: Callable[..., Any], schema: tuple[tuple[str, FieldKind], ...]
) -> Any:
    values: dict[str, object] = {}
    for name, kind in schema:
        if kind == "int":
            values[name] = reader.int_field(name)
        elif kind == "str":
            values[name] = reader.str_field(name)
        elif kind == "bool":
            flag = reader.byte(name)
            if flag > 1:
                raise MalformedPayloadError(f"{name}: bool byte {flag}")
            values[name] = flag == 1
        elif kind is MarketSpec:
            values[name] = _decode_fields(reader, MarketSpec, MARKET_SPEC_SCHEMA)
        else:
            codes = ENUM_CODES[kind]  # type: ignore[index]
            code = reader.byte(name)
            if code >= len(codes):
                raise MalformedPayloadError(f"{name}: unknown enum code {code}")
            values[name] = codes[code]
    return cls(**values)


def decode_command(payload: bytes) -> DecodedCommand:
    """Decode one WAL payload written by `encode_command`; strict (see module docstring)."""
    reader = _Reader(payload)
    version = reader.byte("format_version")
    if version == FORMAT_VERSION:
        schemas = COMMAND_SCHEMAS
    elif version == FORMAT_VERSION_V1:
        schemas = COMMAND_SCHEMAS_V1
    else:
        raise UnknownFormatVersionError(f"unknown command format version {version}")
    tag = reader.byte("command_tag")
    cls = _TAG_TO_TYPE.get(tag)
    if cls is None:
        raise UnknownCommandTypeError(f"unknown command tag {tag}")
    timestamp_ns = reader.int_field("timestamp_ns")
    if timestamp_ns < 0:
        raise MalformedPayloadError(f"negative timestamp_ns {timestamp_ns}")
    command = _decode_fields(reader, cls, schemas[cls])
    if reader.offset != len(payload):
        raise MalformedPayloadError(
            f"{len(payload) - reader.offset} trailing bytes after {cls.__name__}"
        )
    return DecodedCommand(command=command, timestamp_ns=timestamp_ns)
