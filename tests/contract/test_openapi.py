"""The OpenAPI 3 document (gen/openapi/exchange.openapi.json, written by the codegen) is a
valid OpenAPI 3 document and has exactly the REST routes Envoy routes: one operation per
`google.api.http` binding, signed unless public, with the one error shape."""

from __future__ import annotations

import json
import re
from typing import Any

from openapi_spec_validator import validate

from gateway.rpc_catalogue import (
    DESCRIPTOR_PATH,
    SERVICE_UPSTREAMS,
    Access,
    load_rpcs,
    rest_bindings,
)
from tests.paths import REPO_ROOT

OPENAPI_PATH = REPO_ROOT / "gen" / "openapi" / "exchange.openapi.json"


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    return document


def test_the_document_is_valid_openapi_3() -> None:
    validate(_document())  # raises OpenAPIValidationError with the path of the fault


def test_every_rest_binding_is_an_operation_and_nothing_else() -> None:
    document = _document()
    expected = {}
    for rpc, binding in rest_bindings(load_rpcs(DESCRIPTOR_PATH, SERVICE_UPSTREAMS)):
        path = re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", binding.template)
        expected[(binding.method.lower(), path)] = rpc
    documented = {
        (verb, path) for path, operations in document["paths"].items() for verb in operations
    }
    assert documented == set(expected)
    for (verb, path), rpc in expected.items():
        operation = document["paths"][path][verb]
        assert (operation["security"] == []) is (rpc.access is Access.PUBLIC), path
        assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }


def test_integers_of_64_bits_are_decimal_strings_and_no_float_appears() -> None:
    text = OPENAPI_PATH.read_text()
    assert '"number"' not in text
    order = _document()["components"]["schemas"]["exchange.trading.v1.Order"]["properties"]
    assert order["price"]["type"] == "string"
    assert order["price"]["pattern"] == "^-?[0-9]+$"
