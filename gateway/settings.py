"""The gateway's configuration, from the environment: the seeds' EDGE_* variables
(EDGE_API_SECRETS, EDGE_AUTH_SKEW_SEC, EDGE_REPLAY_TTL_SEC, EDGE_RATE_LIMIT_PER_MINUTE)
keep their meaning; the table of every variable is in docs/api/authentication.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from exchange.apikey.v1 import apikey_pb2

DEFAULT_PERMISSIONS: tuple[int, ...] = (
    apikey_pb2.PERMISSION_READ,
    apikey_pb2.PERMISSION_TRADE,
    apikey_pb2.PERMISSION_WITHDRAW,
)


@dataclass(frozen=True)
class StaticKey:
    """A key from EDGE_API_SECRETS: configuration, not data (it cannot be revoked by RPC)."""

    key_id: str
    secret: str
    account_id: str
    permissions: tuple[int, ...]


@dataclass(frozen=True)
class GatewaySettings:
    static_keys: tuple[StaticKey, ...] = ()
    auth_skew_seconds: int = 30
    replay_ttl_seconds: int = 120
    rate_limit_per_minute: int = 1000
    idempotency_ttl_seconds: int = 86_400
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_key_master_secret: str = field(default="", repr=False)
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    grpc_port: int = 50053
    # Kafka-API bootstrap servers of the event log; empty: no market data is projected.
    broker: str = ""
    # The core's gRPC address (CoreAdminService, direct): the market-data projection starts
    # from its GetProjectionSnapshot (docs/adr/0017). Empty: the projection replays the
    # whole log from its first offset.
    core_address: str = ""
    # The market history service (streaming/: ListCandles, older trades); empty: those
    # calls answer UNAVAILABLE DEPENDENCY_UNAVAILABLE.
    market_history_address: str = ""

    def __post_init__(self) -> None:
        if self.auth_skew_seconds <= 0 or self.rate_limit_per_minute <= 0:
            message = "EDGE_AUTH_SKEW_SEC and EDGE_RATE_LIMIT_PER_MINUTE must be positive"
            raise ValueError(message)
        # A signature must be remembered for as long as its timestamp is acceptable
        # (X-TS may lie up to the skew in the past or the future).
        if self.replay_ttl_seconds < 2 * self.auth_skew_seconds:
            message = "EDGE_REPLAY_TTL_SEC must be at least twice EDGE_AUTH_SKEW_SEC"
            raise ValueError(message)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environment is None else environment
        defaults = cls()
        return cls(
            static_keys=parse_static_keys(env.get("EDGE_API_SECRETS", "")),
            auth_skew_seconds=int(env.get("EDGE_AUTH_SKEW_SEC", defaults.auth_skew_seconds)),
            replay_ttl_seconds=int(env.get("EDGE_REPLAY_TTL_SEC", defaults.replay_ttl_seconds)),
            rate_limit_per_minute=int(
                env.get("EDGE_RATE_LIMIT_PER_MINUTE", defaults.rate_limit_per_minute)
            ),
            idempotency_ttl_seconds=int(
                env.get("EDGE_IDEMPOTENCY_TTL_SEC", defaults.idempotency_ttl_seconds)
            ),
            redis_url=env.get("EDGE_REDIS_URL", defaults.redis_url),
            api_key_master_secret=env.get("EDGE_API_KEY_MASTER_SECRET", ""),
            http_host=env.get("EDGE_HTTP_HOST", defaults.http_host),
            http_port=int(env.get("EDGE_HTTP_PORT", defaults.http_port)),
            grpc_port=int(env.get("EDGE_GRPC_PORT", defaults.grpc_port)),
            broker=env.get("EDGE_BROKER", ""),
            core_address=env.get("EDGE_CORE_ADDRESS", ""),
            market_history_address=env.get("EDGE_MARKET_HISTORY_ADDRESS", ""),
        )


def parse_static_keys(text: str) -> tuple[StaticKey, ...]:
    """`key:secret[:account[:PERM+PERM]]`, comma separated (permission names without the
    `PERMISSION_` prefix, e.g. `READ+TRADE` or `OPERATE`)."""
    keys: list[StaticKey] = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        fields = entry.split(":")
        if len(fields) < 2 or len(fields) > 4 or not fields[0] or not fields[1]:
            message = f"EDGE_API_SECRETS entry {fields[0]!r} is not key:secret[:account[:PERMS]]"
            raise ValueError(message)
        account_id = fields[2] if len(fields) > 2 and fields[2] else fields[0]
        permissions = DEFAULT_PERMISSIONS
        if len(fields) == 4:
            permissions = tuple(
                apikey_pb2.Permission.Value(f"PERMISSION_{name.strip().upper()}")
                for name in fields[3].split("+")
            )
        keys.append(
            StaticKey(
                key_id=fields[0], secret=fields[1], account_id=account_id, permissions=permissions
            )
        )
    return tuple(keys)
