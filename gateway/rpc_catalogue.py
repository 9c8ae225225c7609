"""The exchange's RPCs as the edge routes them: one catalogue for Envoy's config and the gateway.

`load_rpcs(DESCRIPTOR_PATH, SERVICE_UPSTREAMS)` reads every RPC of the routed services from
the contracts' descriptor set, with its `google.api.http` bindings (`HttpBinding`, each with
the RE2 path regex Envoy matches). Each `Rpc` knows its upstream (`SERVICE_UPSTREAMS`: which
process implements the service), its access class (`access_for`: public, read, trade,
withdraw or operate) and its route timeout. gateway/envoy_config.py renders routes from it;
the gateway's authorization and request validation find a request's RPC and access with the
same rules, so the edge and the gateway cannot disagree on what a route needs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

DESCRIPTOR_PATH = Path(__file__).resolve().parents[1] / "gen" / "descriptors" / "exchange.binpb"


class Access(enum.Enum):
    """What a caller needs for an RPC; the value names the ext_authz filter and its path."""

    PUBLIC = "public"
    READ = "read"
    TRADE = "trade"
    WITHDRAW = "withdraw"
    OPERATE = "operate"


CHECKED_ACCESS = (Access.READ, Access.TRADE, Access.WITHDRAW, Access.OPERATE)


class Upstream(enum.Enum):
    """The clusters behind the edge."""

    CORE = "core"
    LEDGER = "ledger"
    GATEWAY_GRPC = "gateway_grpc"
    GATEWAY_HTTP = "gateway_http"


# Which process implements each service (the services Envoy routes).
SERVICE_UPSTREAMS: dict[str, Upstream] = {
    "exchange.trading.v1.TradingService": Upstream.CORE,
    "exchange.funding.v1.FundingService": Upstream.CORE,
    "exchange.core.v1.CoreAdminService": Upstream.CORE,
    "exchange.ledger.v1.LedgerService": Upstream.LEDGER,
    "exchange.marketdata.v1.MarketDataService": Upstream.GATEWAY_GRPC,
    "exchange.apikey.v1.ApiKeyService": Upstream.GATEWAY_GRPC,
}

# RPCs whose access differs from their service's rule in `access_for`.
_ACCESS_EXCEPTIONS: dict[str, Access] = {
    "exchange.funding.v1.FundingService/CreateWithdrawal": Access.WITHDRAW,
    "exchange.funding.v1.FundingService/GetTransfer": Access.READ,
    "exchange.funding.v1.FundingService/ListTransfers": Access.READ,
    "exchange.ledger.v1.LedgerService/ListBalances": Access.READ,
}

# Per-RPC timeouts (seconds) where the default does not fit; 0 means none (streams).
DEFAULT_TIMEOUT_SECONDS = 5
_TIMEOUT_EXCEPTIONS_SECONDS: dict[str, int] = {
    "exchange.trading.v1.TradingService/StreamOrders": 0,
    "exchange.core.v1.CoreAdminService/TakeSnapshot": 120,
    "exchange.ledger.v1.LedgerService/RebuildBalances": 300,
    "exchange.ledger.v1.LedgerService/CheckInvariants": 120,
    "exchange.ledger.v1.LedgerService/IngestEvents": 60,
}


@dataclass(frozen=True)
class HttpBinding:
    """One `google.api.http` binding: an HTTP method and a path template."""

    method: str
    template: str
    # The request field the body fills: "*" (all), "" (none: query parameters only).
    body: str = ""

    def path_regex(self) -> str:
        """The template as an RE2 regex over the path (query string excluded by Envoy).

        `{var}` matches one segment, `{var=**}` any rest; literal parts match exactly.
        """
        parts: list[str] = []
        position = 0
        for variable in re.finditer(r"\{([^}=]+)(=([^}]*))?\}", self.template):
            parts.append(re.escape(self.template[position : variable.start()]))
            pattern = variable.group(3)
            parts.append(".+" if pattern == "**" else "[^/:]+")
            position = variable.end()
        parts.append(re.escape(self.template[position:]))
        return "^" + "".join(parts) + "$"


@dataclass(frozen=True)
class Rpc:
    """One RPC of an exchange service, with everything a route needs."""

    service: str
    method: str
    streaming: bool
    bindings: tuple[HttpBinding, ...]
    # Full name of the request message, e.g. `exchange.trading.v1.PlaceOrderRequest`.
    input_type: str = ""

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.method}"

    @property
    def upstream(self) -> Upstream:
        return SERVICE_UPSTREAMS[self.service]

    @property
    def access(self) -> Access:
        return access_for(self)

    @property
    def timeout_seconds(self) -> int:
        return _TIMEOUT_EXCEPTIONS_SECONDS.get(self.full_name, DEFAULT_TIMEOUT_SECONDS)


def access_for(rpc: Rpc) -> Access:
    """The access rule: market data is public; API keys and core admin need an operator;
    trading reads need READ and everything else there TRADE; funding and ledger are
    operator calls except the trader's own reads and withdrawals (`_ACCESS_EXCEPTIONS`).
    An unknown service raises: a new service must be classified before it is routed."""
    exception = _ACCESS_EXCEPTIONS.get(rpc.full_name)
    if exception is not None:
        return exception
    package = rpc.service.rsplit(".", 1)[0]
    if package == "exchange.marketdata.v1":
        return Access.PUBLIC
    if package == "exchange.trading.v1":
        reads = rpc.bindings and all(binding.method == "GET" for binding in rpc.bindings)
        return Access.READ if reads else Access.TRADE
    if package in {
        "exchange.apikey.v1",
        "exchange.core.v1",
        "exchange.funding.v1",
        "exchange.ledger.v1",
    }:
        return Access.OPERATE
    message = f"no access rule for {rpc.service}: classify it in gateway/rpc_catalogue.py"
    raise ValueError(message)


def load_rpcs(descriptor_path: Path, services: Iterable[str]) -> list[Rpc]:
    """The RPCs of `services` with their HTTP bindings, read from the descriptor set."""
    wanted = set(services)
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_path.read_bytes())
    rpcs: list[Rpc] = []
    for file in descriptor_set.file:
        for service in file.service:
            name = f"{file.package}.{service.name}"
            if name not in wanted:
                continue
            wanted.discard(name)
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                rpcs.append(
                    Rpc(
                        service=name,
                        method=method.name,
                        streaming=method.client_streaming or method.server_streaming,
                        bindings=tuple(_bindings(rule)),
                        input_type=method.input_type.lstrip("."),
                    )
                )
    if wanted:
        message = f"services missing from {descriptor_path}: {sorted(wanted)}"
        raise ValueError(message)
    return rpcs


def _bindings(rule: http_pb2.HttpRule) -> Iterable[HttpBinding]:
    for one in (rule, *rule.additional_bindings):
        kind = one.WhichOneof("pattern")
        if kind is not None and kind != "custom":
            yield HttpBinding(method=kind.upper(), template=str(getattr(one, kind)), body=one.body)


def rest_bindings(rpcs: Sequence[Rpc]) -> list[tuple[Rpc, HttpBinding]]:
    """Every REST binding in match order: literal paths first, so `/v1/orders:lookup` wins
    over `/v1/orders/{order_id}`-like templates whatever the descriptor's order."""
    pairs = [(rpc, binding) for rpc in rpcs for binding in rpc.bindings]
    pairs.sort(key=lambda pair: "{" in pair[1].template)
    return pairs
