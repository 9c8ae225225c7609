"""The generated Envoy config: valid for the real Envoy, the committed example is what
the generator renders, and every route but public market data and /ws is authorized."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from common.identity_headers import IDENTITY_HEADERS
from gateway.envoy_config import (
    EXAMPLE_CONFIG_PATH,
    EdgeParameters,
    render,
    render_json,
    write_edge_descriptor,
)
from gateway.rpc_catalogue import (
    DESCRIPTOR_PATH,
    SERVICE_UPSTREAMS,
    Access,
    HttpBinding,
    Rpc,
    access_for,
    load_rpcs,
)
from infra.local.envoy import validate_config


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes: list[dict[str, Any]] = manager["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def test_the_committed_example_is_what_the_generator_renders() -> None:
    assert EXAMPLE_CONFIG_PATH.read_text() == render_json(EdgeParameters()), (
        "run `python -m gateway.envoy_config` and commit envoy/envoy.example.json"
    )


def test_envoy_validates_the_rendered_config(tmp_path: Path) -> None:
    descriptor = write_edge_descriptor(tmp_path / "edge.binpb")
    config_path = tmp_path / "envoy.json"
    config_path.write_text(json.dumps(render(EdgeParameters(descriptor_path=str(descriptor)))))
    result = validate_config(config_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_refuses_a_config_with_a_broken_route(tmp_path: Path) -> None:
    descriptor = write_edge_descriptor(tmp_path / "edge.binpb")
    config = render(EdgeParameters(descriptor_path=str(descriptor)))
    _routes(config)[1]["route"]["cluster"] = "no-such-cluster"
    config_path = tmp_path / "envoy.json"
    config_path.write_text(json.dumps(config))
    assert validate_config(config_path).returncode != 0


def test_every_route_is_authorized_except_market_data_websocket_and_not_found() -> None:
    config = render(EdgeParameters())
    open_routes = []
    for route in _routes(config):
        filters = route.get("typed_per_filter_config", {})
        if not any(name.startswith("ext_authz_") for name in filters):
            open_routes.append(route["name"])
    rpcs = load_rpcs(DESCRIPTOR_PATH, SERVICE_UPSTREAMS)
    public = {rpc.full_name for rpc in rpcs if rpc.access is Access.PUBLIC}
    public_rest = {
        f"{binding.method} {binding.template}"
        for rpc in rpcs
        if rpc.access is Access.PUBLIC
        for binding in rpc.bindings
    }
    assert all(name.startswith("exchange.marketdata.v1.") for name in public)
    assert set(open_routes) == public | public_rest | {"websocket", "not-found"}


def test_routes_reach_every_rpc_over_grpc_and_every_binding_over_rest() -> None:
    names = {route["name"] for route in _routes(render(EdgeParameters()))}
    for rpc in load_rpcs(DESCRIPTOR_PATH, SERVICE_UPSTREAMS):
        assert rpc.full_name in names
        for binding in rpc.bindings:
            assert f"{binding.method} {binding.template}" in names


def test_identity_headers_are_stripped_first_and_admin_is_on_loopback() -> None:
    config = render(EdgeParameters())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = manager["typed_config"]["http_filters"]
    names = [item["name"] for item in filters]
    # Stripped before any filter that reads them (only the header check, which refuses
    # malformed headers outright, runs earlier).
    strip = names.index("strip_identity")
    assert strip < min(index for index, name in enumerate(names) if name.startswith("ext_authz"))
    assert names[:strip] == ["header_check"]
    mutations = filters[strip]["typed_config"]["mutations"]["request_mutations"]
    assert {item["remove"] for item in mutations} == set(IDENTITY_HEADERS)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("rpc", "access"),
    [
        ("exchange.trading.v1.TradingService/PlaceOrder", Access.TRADE),
        ("exchange.trading.v1.TradingService/GetOrder", Access.READ),
        ("exchange.trading.v1.TradingService/StreamOrders", Access.TRADE),
        ("exchange.funding.v1.FundingService/CreateWithdrawal", Access.WITHDRAW),
        ("exchange.funding.v1.FundingService/CreateDeposit", Access.OPERATE),
        ("exchange.ledger.v1.LedgerService/ListBalances", Access.READ),
        ("exchange.ledger.v1.LedgerService/RecordTradeExecuted", Access.OPERATE),
        ("exchange.core.v1.CoreAdminService/GetEngineStatus", Access.OPERATE),
        ("exchange.apikey.v1.ApiKeyService/ListApiKeys", Access.OPERATE),
        ("exchange.marketdata.v1.MarketDataService/GetOrderBook", Access.PUBLIC),
    ],
)
def test_access_rules(rpc: str, access: Access) -> None:
    found = {one.full_name: one for one in load_rpcs(DESCRIPTOR_PATH, SERVICE_UPSTREAMS)}
    assert found[rpc].access is access


def test_an_unclassified_service_is_refused() -> None:
    with pytest.raises(ValueError, match="no access rule"):
        access_for(
            Rpc(service="exchange.new.v1.NewService", method="Do", streaming=False, bindings=())
        )


@pytest.mark.parametrize(
    ("template", "path", "matches"),
    [
        ("/v1/orders/{order_id}", "/v1/orders/42", True),
        ("/v1/orders/{order_id}", "/v1/orders/42/x", False),
        ("/v1/orders/{order_id}", "/v1/orders:lookup", False),
        ("/v1/orders/{order_id}:cancel", "/v1/orders/42:cancel", True),
        ("/v1/orders:cancelAll", "/v1/orders:cancelAll", True),
        ("/v1/orders:cancelAll", "/v1/ordersXcancelAll", False),
        ("/v1/files/{name=**}", "/v1/files/a/b", True),
    ],
)
def test_path_templates_become_anchored_regexes(template: str, path: str, matches: bool) -> None:
    pattern = HttpBinding(method="GET", template=template).path_regex()
    assert bool(re.match(pattern, path)) is matches
