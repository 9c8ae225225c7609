"""The descriptor set in gen/descriptors is what Envoy's grpc_json_transcoder needs:
Envoy validates a config naming every service, refuses an unknown one, and a real
REST call through Envoy reaches a gRPC server with amounts intact."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from exchange.common.v1 import types_pb2
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from google.protobuf import descriptor_pb2

from infra.local.envoy import envoy_binary, validate_config
from infra.local.ports import free_port
from tests.paths import GEN_ROOT

DESCRIPTOR_PATH = GEN_ROOT / "descriptors" / "exchange.binpb"


def _service_names() -> list[str]:
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_PATH.read_bytes())
    return sorted(
        f"{file.package}.{service.name}"
        for file in descriptor_set.file
        if file.package.startswith("exchange.")
        for service in file.service
    )


_TYPE = "type.googleapis.com/envoy.extensions"


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _config(services: list[str], *, listen_port: int, upstream_port: int) -> dict[str, Any]:
    transcoder = {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": {
            "@type": f"{_TYPE}.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(DESCRIPTOR_PATH),
            "services": services,
            "print_options": {"preserve_proto_field_names": True},
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": f"{_TYPE}.filters.http.router.v3.Router"},
    }
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    connection_manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": f"{_TYPE}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "edge",
            "route_config": {
                "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]
            },
            "http_filters": [transcoder, router],
        },
    }
    http2 = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": f"{_TYPE}.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        },
    }
    endpoint = {"endpoint": {"address": _address(upstream_port)}}
    cluster = {
        "name": "backend",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2,
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    listener = {
        "name": "edge",
        "address": _address(listen_port),
        "filter_chains": [{"filters": [connection_manager]}],
    }
    return {
        "admin": {"address": _address(0)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def _validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config_path = tmp_path / "envoy.json"
    config_path.write_text(json.dumps(config))
    return validate_config(config_path)


def test_descriptor_set_holds_every_service() -> None:
    assert _service_names() == [
        "exchange.apikey.v1.ApiKeyService",
        "exchange.core.v1.CoreAdminService",
        "exchange.funding.v1.FundingService",
        "exchange.ledger.v1.LedgerService",
        "exchange.marketdata.v1.MarketDataService",
        "exchange.trading.v1.TradingService",
    ]


def test_envoy_validates_a_transcoder_for_every_service(tmp_path: Path) -> None:
    result = _validate(_config(_service_names(), listen_port=0, upstream_port=1), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_refuses_a_service_missing_from_the_descriptor(tmp_path: Path) -> None:
    services = [*_service_names(), "exchange.missing.v1.MissingService"]
    result = _validate(_config(services, listen_port=0, upstream_port=1), tmp_path)
    assert result.returncode != 0


class _OneMarket(marketdata_pb2_grpc.MarketDataServiceServicer):
    """Answers GetMarket with a fixed market: enough to see the REST mapping work."""

    def GetMarket(  # noqa: N802 - the generated servicer's method name
        self, request: marketdata_pb2.GetMarketRequest, context: grpc.ServicerContext
    ) -> marketdata_pb2.GetMarketResponse:
        return marketdata_pb2.GetMarketResponse(
            market=types_pb2.Market(
                symbol=request.symbol,
                base_asset="BTC",
                quote_asset="USDT",
                base_scale=8,
                quote_scale=6,
                price_tick=10_000,
                lot_step=10_000,
                max_quantity=2**63 - 1,
                mode=types_pb2.MARKET_MODE_NORMAL,
            )
        )


@pytest.fixture
def transcoding_edge(tmp_path: Path) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(
        _OneMarket(),  # type: ignore[abstract]  # a stand-in implements only GetMarket
        server,
    )
    upstream_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    listen_port = free_port()
    config_path = tmp_path / "envoy.json"
    config_path.write_text(
        json.dumps(
            _config(
                ["exchange.marketdata.v1.MarketDataService"],
                listen_port=listen_port,
                upstream_port=upstream_port,
            )
        )
    )
    envoy = subprocess.Popen(
        [
            envoy_binary(),
            "-c",
            str(config_path),
            "--log-level",
            "error",
            "--base-id",
            str(listen_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", listen_port), timeout=0.2).close()
                break
            except OSError:
                assert envoy.poll() is None, envoy.stderr.read() if envoy.stderr else b""
                time.sleep(0.05)
        yield listen_port
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)
        server.stop(grace=None)


def test_rest_get_market_through_envoy_keeps_int64_exact(transcoding_edge: int) -> None:
    url = f"http://127.0.0.1:{transcoding_edge}/v1/markets/BTC-USDT"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        body = json.loads(response.read())
    market = body["market"]
    assert market["symbol"] == "BTC-USDT"
    # int64 travels as a JSON string, so no client parses it into a lossy double.
    assert market["max_quantity"] == str(2**63 - 1)
    assert market["price_tick"] == "10000"
    assert market["mode"] == "MARKET_MODE_NORMAL"
