"""docs/api/seed-mapping.md maps every seed endpoint to an RPC that really has it."""

from __future__ import annotations

import re

import pytest
from exchange.events.v1 import envelope_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor

from tests.paths import DOCS_ROOT, REPO_ROOT

_MAPPING = DOCS_ROOT / "api" / "seed-mapping.md"
_ROW = re.compile(r"^\| (GET|POST|DELETE|PATCH|PUT) \| (/\S*) \| (\S+) \|", re.MULTILINE)
_COMMAND_OR_EVENT_ROW = re.compile(r"^\| (\w+) \| (exchange\.[\w.]+)", re.MULTILINE)
SEEDS_ROOT = REPO_ROOT / "docs" / "seeds"  # a copy of ../shared/seeds (see its README)
_SEED_ENDPOINT = re.compile(r"`(GET|POST|DELETE|PATCH|PUT) (/[^`]*)`")


def _mapping_rows() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in _ROW.finditer(_MAPPING.read_text())]


def _bindings(method: MethodDescriptor) -> set[tuple[str, str]]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return set()
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    found = set()
    for binding in [rule, *rule.additional_bindings]:
        verb = binding.WhichOneof("pattern")
        assert verb is not None
        found.add((verb.upper(), getattr(binding, verb)))
    return found


def _snake(path: str) -> str:
    return re.sub(
        r"\{(\w+)\}",
        lambda m: "{" + re.sub(r"(?<!^)([A-Z])", r"_\1", m.group(1)).lower() + "}",
        path,
    )


def test_every_seed_endpoint_is_in_the_mapping() -> None:
    seeds = "\n".join(path.read_text() for path in sorted(SEEDS_ROOT.glob("*.txt")))
    if not seeds:
        pytest.fail(f"the seed documents are expected in {SEEDS_ROOT}")
    seed_endpoints = {(verb, _snake(path)) for verb, path in _SEED_ENDPOINT.findall(seeds)}
    mapped = {(verb, path) for verb, path, _ in _mapping_rows()}
    assert len(seed_endpoints) >= 24
    assert seed_endpoints - mapped == set()


def test_every_mapped_rpc_has_the_seed_route(all_methods: list[MethodDescriptor]) -> None:
    methods = {method.full_name: method for method in all_methods}
    problems = []
    for verb, path, target in _mapping_rows():
        if not target.startswith("exchange."):
            continue
        method = methods.get(target)
        if method is None:
            problems.append(f"{target} does not exist")
        elif (verb, path) not in _bindings(method):
            problems.append(f"{target} has no binding {verb} {path}")
    assert problems == []


def test_commands_and_events_map_to_existing_contracts(all_methods: list[MethodDescriptor]) -> None:
    names = {method.full_name for method in all_methods}
    names |= {
        f"exchange.events.v1.{field.message_type.name}"
        for field in envelope_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"].fields
        if field.message_type is not None
    }
    rows = _COMMAND_OR_EVENT_ROW.findall(_MAPPING.read_text())
    assert len(rows) >= 6
    assert [target for _, target in rows if target not in names] == []
