"""REST requests are checked against their RPC's request message before Envoy transcodes
them, so malformed JSON, unknown fields, wrong types and unknown query parameters get a
FIELD_INVALID (400) with the field named, and nothing of them reaches a service.

The RPC of a REST request is found with the same bindings (`google.api.http`) and the
same path regexes Envoy's routes use (gateway/envoy_config.py); the message types come
from the same descriptor set Envoy's transcoder reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, json_format, message
from google.protobuf.message_factory import GetMessageClass

from gateway.envoy_config import (
    DESCRIPTOR_PATH,
    SERVICE_UPSTREAMS,
    HttpBinding,
    Rpc,
    load_rpcs,
    rest_bindings,
)
from gateway.errors import EdgeError


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
        found = self.find(method, split.path)
        if found is None:
            raise EdgeError("FIELD_INVALID", f"no API has {method} {split.path}")
        rpc, binding = found
        request_type = self._pool.FindMessageTypeByName(rpc.input_type)
        request_id = ""
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            if not _has_field_path(request_type, name):
                raise EdgeError(
                    "FIELD_INVALID", f"unknown query parameter {name!r}", {"field": name}
                )
            if name in {"request_id", "requestId"}:
                request_id = value
        if binding.body == "*":
            parsed = GetMessageClass(request_type)()
            _parse_body(parsed, body)
            if "request_id" in request_type.fields_by_name:
                request_id = getattr(parsed, "request_id", "") or request_id
        elif body.strip():
            raise EdgeError("FIELD_INVALID", f"{method} {binding.template} takes no body")
        return ValidatedRequest(rpc=rpc, request_id=request_id)


def _has_field_path(message_type: descriptor.Descriptor, dotted: str) -> bool:
    current: descriptor.Descriptor | None = message_type
    for part in dotted.split("."):
        if current is None:
            return False
        field = current.fields_by_name.get(part) or _by_json_name(current, part)
        if field is None:
            return False
        current = field.message_type
    return True


def _by_json_name(
    message_type: descriptor.Descriptor, name: str
) -> descriptor.FieldDescriptor | None:
    return next((field for field in message_type.fields if field.json_name == name), None)


def _parse_body(target: message.Message, body: bytes) -> None:
    if not body.strip():
        return
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EdgeError("FIELD_INVALID", f"the body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise EdgeError("FIELD_INVALID", "the body must be a JSON object")
    try:
        json_format.ParseDict(document, target, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise _field_error(str(error)) from error


def _field_error(parse_error: str) -> EdgeError:
    """FIELD_INVALID naming the field a json_format error names, when it names one."""
    unknown = re.search(r'has no field named "([^"]+)"', parse_error)
    if unknown is not None:
        name = unknown.group(1)
        return EdgeError("FIELD_INVALID", f"unknown field {name!r}", {"field": name})
    wrong = re.search(r"Failed to parse (\w+) field", parse_error)
    metadata = {"field": wrong.group(1)} if wrong is not None else {}
    return EdgeError("FIELD_INVALID", parse_error.split("\n", 1)[0], metadata)
