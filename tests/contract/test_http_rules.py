"""Every unary RPC is reachable over REST through Envoy's transcoder; streams are gRPC only."""

from __future__ import annotations

import re

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor

_VERBS = ("get", "put", "post", "delete", "patch")
_PATH_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=[^}]*)?\}")


def _http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return rule


def _bindings(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    verb = rule.WhichOneof("pattern")
    assert verb in _VERBS, f"unsupported HTTP pattern {verb}"
    return verb, getattr(rule, verb)


def test_every_unary_rpc_has_an_http_rule(all_methods: list[MethodDescriptor]) -> None:
    unary = [m for m in all_methods if not m.client_streaming and not m.server_streaming]
    assert len(unary) > 50, "the contracts should cover the whole exchange"
    missing = [m.full_name for m in unary if _http_rule(m) is None]
    assert missing == []


def test_streaming_rpcs_have_no_http_rule(all_methods: list[MethodDescriptor]) -> None:
    streaming = [m for m in all_methods if m.client_streaming or m.server_streaming]
    assert [m.full_name for m in streaming] == ["exchange.trading.v1.TradingService.StreamOrders"]
    assert all(_http_rule(m) is None for m in streaming)


def test_path_variables_and_bodies_name_request_fields(all_methods: list[MethodDescriptor]) -> None:
    problems = []
    for method in all_methods:
        rule = _http_rule(method)
        if rule is None:
            continue
        request_fields = set(method.input_type.fields_by_name)
        for binding in _bindings(rule):
            verb, path = _verb_and_path(binding)
            if not path.startswith("/v1/"):
                problems.append(f"{method.full_name}: {path} is not under /v1/")
            problems.extend(
                f"{method.full_name}: {{{variable}}} is not a request field"
                for variable in _PATH_VARIABLE.findall(path)
                if variable.split(".")[0] not in request_fields
            )
            if binding.body not in ("", "*") and binding.body not in request_fields:
                problems.append(f"{method.full_name}: body {binding.body} is not a request field")
            if verb in ("get", "delete") and binding.body:
                problems.append(f"{method.full_name}: {verb} must not have a body")
    assert problems == []


def test_no_two_rpcs_share_a_route(all_methods: list[MethodDescriptor]) -> None:
    owners: dict[tuple[str, str], str] = {}
    clashes = []
    for method in all_methods:
        rule = _http_rule(method)
        if rule is None:
            continue
        for binding in _bindings(rule):
            verb, path = _verb_and_path(binding)
            route = (verb, _PATH_VARIABLE.sub("{}", path))
            if route in owners and owners[route] != method.full_name:
                clashes.append(f"{route}: {owners[route]} and {method.full_name}")
            owners[route] = method.full_name
    assert clashes == []


@pytest.mark.parametrize(
    ("method_name", "verb", "path"),
    [
        ("exchange.trading.v1.TradingService.PlaceOrder", "post", "/v1/orders"),
        ("exchange.trading.v1.TradingService.CancelOrder", "delete", "/v1/orders/{order_id}"),
        ("exchange.trading.v1.TradingService.GetOrder", "get", "/v1/orders/{order_id}"),
        (
            "exchange.marketdata.v1.MarketDataService.GetOrderBook",
            "get",
            "/v1/markets/{symbol}/orderbook",
        ),
        ("exchange.ledger.v1.LedgerService.ListBalances", "get", "/v1/balances"),
    ],
)
def test_seed_paths_are_primary_bindings(
    all_methods: list[MethodDescriptor], method_name: str, verb: str, path: str
) -> None:
    method = next(m for m in all_methods if m.full_name == method_name)
    rule = _http_rule(method)
    assert rule is not None
    assert _verb_and_path(rule) == (verb, path)
