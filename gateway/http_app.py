"""The gateway's HTTP side, reached only through Envoy: the ext_authz check endpoint
(`/authz/<access>/<original path>`), `/healthz`, the `/ws` fan-out (gateway/fanout.py), and
the market-data introspection `/internal/market-data[/state]` (not routed by Envoy;
gateway/market_data/introspection.py).

Envoy's HTTP ext_authz sends the original method, path, the headers named in
`SIGNATURE_HEADERS` and the body; a 200 lets the request through with the identity
headers, anything else is sent to the client as it is (body and headers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from gateway.authorization import Authorizer, CheckRequest
from gateway.edge_wire_names import AUTHZ_PATH_PREFIX
from gateway.errors import EdgeError
from gateway.fanout import Hub, add_websocket_route
from gateway.rpc_catalogue import Access

_LOG = logging.getLogger(__name__)
_AUTHORIZER = web.AppKey("authorizer", Authorizer)


Document = Callable[[], dict[str, Any]]


def build_http_app(
    authorizer: Authorizer,
    hub: Hub,
    *,
    market_data_status: Document | None = None,
    market_data_state: Document | None = None,
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[_AUTHORIZER] = authorizer
    app.router.add_get("/healthz", _healthz)
    for path, document in (
        ("/internal/market-data", market_data_status),
        ("/internal/market-data/state", market_data_state),
    ):
        if document is not None:
            app.router.add_get(path, _json_handler(document))
    add_websocket_route(app, hub, authorizer)
    app.router.add_route("*", AUTHZ_PATH_PREFIX + "/{access}/{tail:.*}", _check)
    return app


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _json_handler(document: Document) -> Callable[[web.Request], Any]:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(document())

    return handler


async def _check(request: web.Request) -> web.Response:
    try:
        access = Access(request.match_info["access"])
    except ValueError:
        return web.Response(status=404)
    prefix = f"{AUTHZ_PATH_PREFIX}/{access.value}"
    check = CheckRequest(
        access=access,
        method=request.method,
        target=request.raw_path.removeprefix(prefix) or "/",
        headers={name.lower(): value for name, value in request.headers.items()},
        body=await request.read(),
    )
    try:
        allowed = await request.app[_AUTHORIZER].check(check)
    except EdgeError as error:
        return _deny(error, grpc=check.grpc)
    except (RedisError, OSError):  # a dependency failed: deny, never allow by accident
        _LOG.exception("authorization failed")
        return _deny(
            EdgeError("DEPENDENCY_UNAVAILABLE", "authorization unavailable"), grpc=check.grpc
        )
    return web.Response(status=200, headers={**allowed.upstream_headers, **allowed.client_headers})


def _deny(error: EdgeError, *, grpc: bool) -> web.Response:
    if grpc:
        return web.Response(
            status=error.http_status,
            text=str(error),
            headers={**error.headers, **error.grpc_headers()},
        )
    return web.Response(
        status=error.http_status,
        body=error.rest_body(),
        content_type="application/json",
        headers=error.headers,
    )
