"""REST requests are checked against their RPC's request message before Envoy transcodes
them, so malformed JSON, unknown fields, wrong types and unknown query parameters get a
FIELD_INVALID (400) with the field named, and nothing of them reaches a service.

The gateway reads exactly what the transcoder forwards, or refuses (ADR 0015): text that
is not UTF-8 anywhere (path, query, body) is ENCODING_INVALID; a byte-order mark, a JSON
number with a fraction or an exponent (the contracts hold no floats; integers are JSON
integers or decimal strings, digits only), NaN/Infinity, or a body where none is taken is
MALFORMED_REQUEST; JSON nested deeper than `JSON_DEPTH_MAX` is NESTING_TOO_DEEP (checked
before parsing, so no recursion limit is ever reached); a JSON key, a query parameter or
a field set twice (also by its JSON name, or by both the query and the path or body) is
DUPLICATE_FIELD.

The RPC of a REST request is found with the same bindings (`google.api.http`) and the
same path regexes Envoy's routes use (gateway/rpc_catalogue.py); the message types come
from the same descriptor set Envoy's transcoder reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, json_format, message
from google.protobuf.message_factory import GetMessageClass

from gateway.errors import EdgeError
from gateway.rpc_catalogue import (
    DESCRIPTOR_PATH,
    SERVICE_UPSTREAMS,
    HttpBinding,
    Rpc,
    load_rpcs,
    rest_bindings,
)

JSON_DEPTH_MAX = 32
_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")
_INTEGER_TYPES = frozenset(
    {
        descriptor.FieldDescriptor.TYPE_INT32,
        descriptor.FieldDescriptor.TYPE_INT64,
        descriptor.FieldDescriptor.TYPE_UINT32,
        descriptor.FieldDescriptor.TYPE_UINT64,
        descriptor.FieldDescriptor.TYPE_SINT32,
        descriptor.FieldDescriptor.TYPE_SINT64,
        descriptor.FieldDescriptor.TYPE_FIXED32,
        descriptor.FieldDescriptor.TYPE_FIXED64,
        descriptor.FieldDescriptor.TYPE_SFIXED32,
        descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    binding: HttpBinding
    rpc: Rpc


@dataclass(frozen=True)
class ValidatedRequest:
    rpc: Rpc
    # The request's `request_id` (body or query), "" when absent or not a field of it.
    request_id: str = ""


class RestRequestValidator:
    """Finds a REST request's RPC and checks its body and query against the request type."""

    def __init__(self, descriptor_path: Path = DESCRIPTOR_PATH) -> None:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_path.read_bytes())
        self._pool = descriptor_pool.DescriptorPool()
        for file in descriptor_set.file:
            self._pool.Add(file)
        self._routes = [
            _Route(binding.method, re.compile(binding.path_regex()), binding, rpc)
            for rpc, binding in rest_bindings(load_rpcs(descriptor_path, SERVICE_UPSTREAMS))
        ]

    def find(self, method: str, path: str) -> tuple[Rpc, HttpBinding] | None:
        for route in self._routes:
            if route.method == method and route.pattern.match(path):
                return route.rpc, route.binding
        return None

    def validate(self, *, method: str, target: str, body: bytes) -> Rpc:
        """The RPC of `method target` after checking `body` and the query; FIELD_INVALID else."""
        return self.validate_request(method=method, target=target, body=body).rpc

    def validate_request(self, *, method: str, target: str, body: bytes) -> ValidatedRequest:
        """`validate`, also returning the request's `request_id` (ADR 0006: it must agree
        with the Idempotency-Key header)."""
        split = urlsplit(target)
        _decoded(split.path, "the path")
        found = self.find(method, split.path)  # the raw path, as Envoy's routes match it
        if found is None:
            raise EdgeError("ROUTE_NOT_FOUND", f"no API has {method} {split.path}")
        rpc, binding = found
        request_type = self._pool.FindMessageTypeByName(rpc.input_type)
        request_id = ""
        seen: set[str] = set(_path_fields(binding.template))
        for name, value in _query_parameters(split.query):
            field = _field_path(request_type, name)
            if field is None:
                raise EdgeError(
                    "FIELD_INVALID", f"unknown query parameter {name!r}", {"field": name}
                )
            if field in seen:
                raise EdgeError("DUPLICATE_FIELD", f"{name!r} is set twice", {"field": name})
            seen.add(field)
            if field == "request_id":
                request_id = value
        if binding.body == "*":
            parsed = GetMessageClass(request_type)()
            document = _parse_body(parsed, body, request_type)
            for name in document:
                field = _field_path(request_type, name)
                if field is not None and field in seen:
                    raise EdgeError("DUPLICATE_FIELD", f"{name!r} is set twice", {"field": name})
            if "request_id" in request_type.fields_by_name:
                request_id = getattr(parsed, "request_id", "") or request_id
        elif body.strip():
            raise EdgeError("MALFORMED_REQUEST", f"{method} {binding.template} takes no body")
        return ValidatedRequest(rpc=rpc, request_id=request_id)


def _decoded(text: str, what: str) -> str:
    """`text` percent-decoded as the transcoder decodes it; ENCODING_INVALID unless UTF-8."""
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError as error:
        raise EdgeError("ENCODING_INVALID", f"{what} is not UTF-8 once percent-decoded") from error


def _query_parameters(query: str) -> list[tuple[str, str]]:
    """(name, value) pairs, percent-decoded, `+` kept as it is (as the transcoder reads)."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((_decoded(name, "a query parameter"), _decoded(value, "a query parameter")))
    return pairs


def _path_fields(template: str) -> list[str]:
    return [match.group(1) for match in re.finditer(r"\{([^}=]+)", template)]


def _field_path(message_type: descriptor.Descriptor, dotted: str) -> str | None:
    """The field path `dotted` names (JSON names resolved to field names), None if none."""
    current: descriptor.Descriptor | None = message_type
    names: list[str] = []
    for part in dotted.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(part) or _by_json_name(current, part)
        if field is None:
            return None
        names.append(field.name)
        current = field.message_type
    return ".".join(names)


def _by_json_name(
    message_type: descriptor.Descriptor, name: str
) -> descriptor.FieldDescriptor | None:
    return next((field for field in message_type.fields if field.json_name == name), None)


def _parse_body(
    target: message.Message, body: bytes, message_type: descriptor.Descriptor
) -> dict[str, Any]:
    """The body's JSON object after it was parsed into `target` (empty for no body)."""
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EdgeError("ENCODING_INVALID", "the body is not UTF-8") from error
    if text.startswith("\ufeff"):
        raise EdgeError("MALFORMED_REQUEST", "the body starts with a byte-order mark")
    _check_depth(text)
    try:
        document = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as error:
        raise EdgeError("MALFORMED_REQUEST", f"the body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise EdgeError("MALFORMED_REQUEST", "the body must be a JSON object")
    _check_values(document, message_type)
    try:
        json_format.ParseDict(document, target, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise _field_error(str(error)) from error
    return document


def _check_depth(text: str) -> None:
    """NESTING_TOO_DEEP past JSON_DEPTH_MAX open brackets, counted outside strings."""
    depth = 0
    in_string = escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            if depth > JSON_DEPTH_MAX:
                raise EdgeError(
                    "NESTING_TOO_DEEP",
                    f"the body nests deeper than {JSON_DEPTH_MAX} levels",
                    {"max_depth": str(JSON_DEPTH_MAX)},
                )
        elif character in "]}":
            depth -= 1


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise EdgeError("DUPLICATE_FIELD", f"the key {key!r} appears twice", {"field": key})
        document[key] = value
    return document


def _no_float(text: str) -> Any:
    raise EdgeError(
        "MALFORMED_REQUEST",
        f"{text} is not an integer: amounts are integers in minor units, as JSON integers "
        "or decimal strings",
    )


def _no_constant(text: str) -> Any:
    raise EdgeError("MALFORMED_REQUEST", f"{text} is not JSON")


def _check_values(value: Any, message_type: descriptor.Descriptor | None) -> None:
    """Integer fields hold a JSON integer or a string of digits; every string is valid
    Unicode (no lone surrogates from `\\ud800` escapes)."""
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, list):
        for item in value:
            _check_values(item, message_type)
    elif isinstance(value, dict):
        fields: set[str] = set()
        for key, item in value.items():
            _check_text(key)
            field = None if message_type is None else _field_of(message_type, key)
            if field is not None and field.name in fields:
                raise EdgeError("DUPLICATE_FIELD", f"{key!r} is set twice", {"field": key})
            if field is not None:
                fields.add(field.name)
            if field is not None and field.type in _INTEGER_TYPES:
                _check_integer(item, field.name)
            _check_values(item, None if field is None else field.message_type)


def _field_of(message_type: descriptor.Descriptor, name: str) -> descriptor.FieldDescriptor | None:
    return message_type.fields_by_name.get(name) or _by_json_name(message_type, name)


def _check_integer(value: Any, name: str) -> None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not (
            isinstance(item, int) or (isinstance(item, str) and _INTEGER_TEXT.fullmatch(item))
        ):
            raise EdgeError(
                "MALFORMED_REQUEST",
                f"{name} must be an integer (a JSON integer or a string of digits)",
                {"field": name},
            )


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise EdgeError("ENCODING_INVALID", "a string is not valid Unicode") from error


def _field_error(parse_error: str) -> EdgeError:
    """FIELD_INVALID naming the field a json_format error names, when it names one
    (DUPLICATE_FIELD for a field set by both its names)."""
    twice = re.search(r'should not have multiple "([^"]+)" fields', parse_error)
    if twice is not None:
        name = twice.group(1)
        return EdgeError("DUPLICATE_FIELD", f"{name!r} is set twice", {"field": name})
    unknown = re.search(r'has no field named "([^"]+)"', parse_error)
    if unknown is not None:
        name = unknown.group(1)
        return EdgeError("FIELD_INVALID", f"unknown field {name!r}", {"field": name})
    wrong = re.search(r"Failed to parse (\w+) field", parse_error)
    metadata = {"field": wrong.group(1)} if wrong is not None else {}
    return EdgeError("FIELD_INVALID", parse_error.split("\n", 1)[0], metadata)
