"""Writes gen/openapi/exchange.openapi.json, the OpenAPI 3 document of the REST API, from the
descriptor set (gen/descriptors/exchange.binpb) and its `google.api.http` rules.

What the document says is what the edge does (ADR 0015): field names as the transcoder
prints them (proto names; requests also accept JSON names), 64-bit integers as decimal
strings, enums by name, Timestamps as RFC 3339 strings; one path per binding, its path
variables and (without a body) its query parameters from the request message; every
refusal as the exchange's one error shape (`google.rpc.Status` with an `ErrorInfo`).
Deterministic: the same descriptors give the same bytes.

usage: write_openapi.py DESCRIPTOR_SET OUTPUT
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

_Field = descriptor_pb2.FieldDescriptorProto
_INT64 = {
    _Field.TYPE_INT64,
    _Field.TYPE_UINT64,
    _Field.TYPE_SINT64,
    _Field.TYPE_FIXED64,
    _Field.TYPE_SFIXED64,
}
_INT32 = {
    _Field.TYPE_INT32,
    _Field.TYPE_UINT32,
    _Field.TYPE_SINT32,
    _Field.TYPE_FIXED32,
    _Field.TYPE_SFIXED32,
}
_PUBLIC_PACKAGES = {"exchange.marketdata.v1"}
_SIGNED: list[dict[str, list[str]]] = [{"apiKey": [], "timestamp": [], "signature": []}]
_ERROR = {"$ref": "#/components/schemas/Error"}
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")


def _schema_name(full_name: str) -> str:
    return full_name.lstrip(".")


def _ref(full_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{_schema_name(full_name)}"}


class _Document:
    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.files = list(descriptor_set.file)
        for file in self.files:
            prefix = f".{file.package}" if file.package else ""
            for message in file.message_type:
                self._add_message(prefix, message)
            for enum in file.enum_type:
                self.enums[f"{prefix}.{enum.name}"] = enum
        self.schemas: dict[str, Any] = {}

    def _add_message(self, prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = message
        for nested in message.nested_type:
            self._add_message(name, nested)
        for enum in message.enum_type:
            self.enums[f"{name}.{enum.name}"] = enum

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        entry = self.messages.get(field.type_name)
        if entry is not None and entry.options.map_entry:
            return {"type": "object", "additionalProperties": self.field_schema(entry.field[1])}
        single = self._single(field)
        if field.label == _Field.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def _single(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:  # noqa: PLR0911 - one per type
        kind = field.type
        if kind == _Field.TYPE_STRING:
            return {"type": "string"}
        if kind == _Field.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == _Field.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind == _Field.TYPE_ENUM:
            self._enum_schema(field.type_name)
            return _ref(field.type_name)
        if field.type_name == ".google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        self.message_schema(field.type_name)
        return _ref(field.type_name)

    def _enum_schema(self, full_name: str) -> None:
        name = _schema_name(full_name)
        if name not in self.schemas:
            values = [value.name for value in self.enums[full_name].value]
            self.schemas[name] = {"type": "string", "enum": values}

    def message_schema(self, full_name: str, *, without: frozenset[str] = frozenset()) -> Any:
        """The schema of a message (registered in components unless fields are left out)."""
        name = _schema_name(full_name)
        if not without and name in self.schemas:
            return _ref(full_name)
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        if not without:
            self.schemas[name] = schema  # before the fields: messages may recurse
        schema["properties"] = {
            field.name: self.field_schema(field)
            for field in self.messages[full_name].field
            if field.name not in without
        }
        return schema if without else _ref(full_name)

    def query_parameters(self, full_name: str, skip: set[str]) -> list[dict[str, Any]]:
        parameters = []
        for field in self.messages[full_name].field:
            is_message = field.type == _Field.TYPE_MESSAGE
            if field.name in skip or (
                is_message and field.type_name != ".google.protobuf.Timestamp"
            ):
                continue
            parameters.append(
                {
                    "name": field.name,
                    "in": "query",
                    "required": False,
                    "schema": self.field_schema(field),
                }
            )
        return parameters


def _bindings(rule: Any) -> list[tuple[str, str, str]]:
    found = []
    for one in (rule, *rule.additional_bindings):
        kind = one.WhichOneof("pattern")
        if kind is not None and kind != "custom":
            found.append((kind, str(getattr(one, kind)), one.body))
    return found


def _operation(
    document: _Document,
    service: str,
    method: descriptor_pb2.MethodDescriptorProto,
    binding: tuple[str, str, str],
    *,
    public: bool,
) -> tuple[str, dict[str, Any]]:
    verb, template, body = binding
    variables = [match.group(1) for match in _VARIABLE.finditer(template)]
    path = _VARIABLE.sub(lambda match: "{" + match.group(1) + "}", template)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in variables
    ]
    operation: dict[str, Any] = {
        "operationId": f"{service.rsplit('.', 1)[-1]}_{method.name}",
        "tags": [service],
    }
    if body == "*":
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": document.message_schema(
                        method.input_type, without=frozenset(variables)
                    )
                }
            },
        }
    else:
        parameters += document.query_parameters(method.input_type, set(variables))
    if verb in {"post", "delete"} and not public:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            }
        )
    operation["parameters"] = parameters
    operation["responses"] = {
        "200": {
            "description": "OK",
            "content": {
                "application/json": {"schema": document.message_schema(method.output_type)}
            },
        },
        "default": {
            "description": "A refusal: the status, and the reason in an ErrorInfo",
            "content": {"application/json": {"schema": _ERROR}},
        },
    }
    operation["security"] = [] if public else _SIGNED
    return path, {verb: operation}


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "details"],
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["@type"],
                "properties": {
                    "@type": {"type": "string"},
                    "reason": {"type": "string"},
                    "domain": {"type": "string"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
    },
}


def render(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    document = _Document(descriptor_set)
    paths: dict[str, dict[str, Any]] = {}
    for file in document.files:
        for service in file.service:
            full = f"{file.package}.{service.name}"
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for index, binding in enumerate(_bindings(rule)):
                    path, operation = _operation(
                        document, full, method, binding, public=file.package in _PUBLIC_PACKAGES
                    )
                    for value in operation.values():
                        if index:
                            value["operationId"] += f"_{index}"
                    paths.setdefault(path, {}).update(operation)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Exchange REST API",
            "version": "v1",
            "description": (
                "Generated from the contracts by infra/codegen/write_openapi.py; do not edit. "
                "Signing: docs/api/authentication.md; errors: docs/api/errors.md."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, **dict(sorted(document.schemas.items()))},
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                "timestamp": {"type": "apiKey", "in": "header", "name": "X-TS"},
                "signature": {"type": "apiKey", "in": "header", "name": "X-SIGNATURE"},
            },
        },
    }


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(source.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(render(descriptors), indent=2, sort_keys=False) + "\n")
