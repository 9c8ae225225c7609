"""API keys: the records in Redis, and how a key's secret is known without storing it.

Guarantees:
- No secret is stored. A created key's secret is derived when needed as
  HMAC-SHA256(EDGE_API_KEY_MASTER_SECRET, "exchange-api-key-v1\\n<key_id>\\n<salt>"); Redis
  holds only the key id, a random salt and the key's attributes, so a copy of Redis alone
  signs nothing. The secret is shown once, in the CreateApiKey response (ADR 0011).
- Creation is idempotent by `request_id`: a retry with the same attributes returns the same
  key (without its secret); other attributes fail IDEMPOTENCY_KEY_REUSED. The request entry
  and the key are written by one Lua script, so a crash never leaves one without the other.
- Revocation is one write read by every gateway on the next request (no cache): "at once".
- Static keys (EDGE_API_SECRETS) are configuration: found by `get`, never listed or revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import cast

from exchange.apikey.v1 import apikey_pb2
from google.protobuf import timestamp_pb2
from redis.asyncio import Redis

from common import page_tokens
from gateway.errors import EdgeError
from gateway.settings import GatewaySettings, StaticKey

_KEY_PREFIX = "apikey:"
_REQUEST_PREFIX = "apikey-request:"
_ALL_KEYS = "apikeys"
_ACCOUNT_KEYS_PREFIX = "apikeys:account:"
_DERIVATION = "v1"
PAGE_SIZE_MAX = 500
DEFAULT_PAGE_SIZE = 100
LABEL_LENGTH_MAX = 200
RATE_LIMIT_PER_MINUTE_MAX = 1_000_000

# KEYS: request entry, key record, all-keys index, account index.
# ARGV: request entry JSON, key id, then the record's field/value pairs.
# Returns the existing request entry, or nil when this call created the key.
_CREATE_SCRIPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('ZADD', KEYS[4], 0, ARGV[2])
return nil
"""


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    account_id: str
    permissions: tuple[int, ...]
    status: int = apikey_pb2.API_KEY_STATUS_ACTIVE
    label: str = ""
    rate_limit_per_minute: int = 0
    created_by: str = ""
    created_at_ms: int = 0
    revoked_by: str = ""
    revoked_at_ms: int = 0
    salt: str = ""
    # Set for static keys only (configuration, never stored).
    static_secret: str = ""

    @property
    def revoked(self) -> bool:
        return self.status == apikey_pb2.API_KEY_STATUS_REVOKED

    def to_proto(self) -> apikey_pb2.ApiKey:
        key = apikey_pb2.ApiKey(
            key_id=self.key_id,
            account_id=self.account_id,
            label=self.label,
            permissions=[apikey_pb2.Permission.ValueType(value) for value in self.permissions],
            status=self.status,  # type: ignore[arg-type]  # a stored ApiKeyStatus value
            rate_limit_per_minute=self.rate_limit_per_minute,
            created_by=self.created_by,
            revoked_by=self.revoked_by,
        )
        if self.created_at_ms:
            key.created_at.CopyFrom(_timestamp(self.created_at_ms))
        if self.revoked_at_ms:
            key.revoked_at.CopyFrom(_timestamp(self.revoked_at_ms))
        return key

    def to_fields(self) -> dict[str, str]:
        return {
            "account_id": self.account_id,
            "permissions": ",".join(str(permission) for permission in self.permissions),
            "status": str(self.status),
            "label": self.label,
            "rate_limit_per_minute": str(self.rate_limit_per_minute),
            "created_by": self.created_by,
            "created_at_ms": str(self.created_at_ms),
            "revoked_by": self.revoked_by,
            "revoked_at_ms": str(self.revoked_at_ms),
            "salt": self.salt,
            "derivation": _DERIVATION,
        }

    @classmethod
    def from_fields(cls, key_id: str, fields: dict[str, str]) -> ApiKeyRecord:
        return cls(
            key_id=key_id,
            account_id=fields["account_id"],
            permissions=tuple(int(value) for value in fields["permissions"].split(",") if value),
            status=int(fields["status"]),
            label=fields.get("label", ""),
            rate_limit_per_minute=int(fields.get("rate_limit_per_minute", "0")),
            created_by=fields.get("created_by", ""),
            created_at_ms=int(fields.get("created_at_ms", "0")),
            revoked_by=fields.get("revoked_by", ""),
            revoked_at_ms=int(fields.get("revoked_at_ms", "0")),
            salt=fields.get("salt", ""),
        )

    @classmethod
    def from_static(cls, key: StaticKey) -> ApiKeyRecord:
        return cls(
            key_id=key.key_id,
            account_id=key.account_id,
            permissions=key.permissions,
            label="EDGE_API_SECRETS",
            created_by="configuration",
            static_secret=key.secret,
        )


def _timestamp(epoch_ms: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(epoch_ms)
    return stamp


def derive_secret(master_secret: str, key_id: str, salt: str) -> str:
    """A created key's secret (hex), from the master secret, the key id and its salt."""
    material = f"exchange-api-key-{_DERIVATION}\n{key_id}\n{salt}".encode()
    return hmac.new(master_secret.encode(), material, hashlib.sha256).hexdigest()


class ApiKeyStore:
    """API keys in Redis plus the static keys of the configuration."""

    def __init__(
        self, redis: Redis, settings: GatewaySettings, *, clock_ms: Callable[[], int]
    ) -> None:
        self._redis = redis
        self._master_secret = settings.api_key_master_secret
        self._static = {key.key_id: ApiKeyRecord.from_static(key) for key in settings.static_keys}
        self._clock_ms = clock_ms
        self._create = redis.register_script(_CREATE_SCRIPT)

    def secret_of(self, record: ApiKeyRecord) -> str:
        if record.static_secret:
            return record.static_secret
        if not self._master_secret:
            raise EdgeError("DEPENDENCY_UNAVAILABLE", "no API key master secret configured")
        return derive_secret(self._master_secret, record.key_id, record.salt)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        static = self._static.get(key_id)
        if static is not None:
            return static
        fields = cast(dict[str, str], await self._redis.hgetall(_KEY_PREFIX + key_id))
        return ApiKeyRecord.from_fields(key_id, fields) if fields else None

    async def create(
        self,
        *,
        request_id: str,
        account_id: str,
        label: str,
        permissions: Sequence[int],
        rate_limit_per_minute: int,
        created_by: str,
    ) -> tuple[ApiKeyRecord, str]:
        """The new key and its secret; on a retry of `request_id`, the key and ""."""
        _validate_new_key(request_id, account_id, label, permissions, rate_limit_per_minute)
        if not self._master_secret:
            raise EdgeError("DEPENDENCY_UNAVAILABLE", "no API key master secret configured")
        fingerprint = hashlib.sha256(
            json.dumps([account_id, label, sorted(permissions), rate_limit_per_minute]).encode()
        ).hexdigest()
        record = ApiKeyRecord(
            key_id="ak_" + secrets.token_hex(10),
            account_id=account_id,
            permissions=tuple(sorted(set(permissions))),
            label=label,
            rate_limit_per_minute=rate_limit_per_minute,
            created_by=created_by,
            created_at_ms=self._clock_ms(),
            salt=secrets.token_hex(16),
        )
        entry = json.dumps({"fingerprint": fingerprint, "key_id": record.key_id})
        flat = [item for pair in record.to_fields().items() for item in pair]
        existing = await self._create(
            keys=[
                _REQUEST_PREFIX + request_id,
                _KEY_PREFIX + record.key_id,
                _ALL_KEYS,
                _ACCOUNT_KEYS_PREFIX + account_id,
            ],
            args=[entry, record.key_id, *flat],
        )
        if existing is None:
            return record, self.secret_of(record)
        earlier = json.loads(existing)
        if earlier["fingerprint"] != fingerprint:
            raise EdgeError(
                "IDEMPOTENCY_KEY_REUSED",
                "request_id was used to create a key with other attributes",
                metadata={"request_id": request_id},
            )
        stored = await self.get(earlier["key_id"])
        if stored is None:
            raise EdgeError("INTERNAL", "a create request names a key that does not exist")
        return stored, ""

    async def list(
        self, *, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[ApiKeyRecord], str]:
        """Keys in key-id order, optionally one account's; the token holds the last id seen."""
        size = DEFAULT_PAGE_SIZE if page_size == 0 else page_size
        if size < 0 or size > PAGE_SIZE_MAX:
            raise EdgeError("FIELD_INVALID", "page_size must be 0..500", {"field": "page_size"})
        index = _ACCOUNT_KEYS_PREFIX + account_id if account_id else _ALL_KEYS
        try:
            last_seen = page_tokens.decode(page_token)
        except page_tokens.PageTokenError as error:
            message = "page_token is not one we issued"
            raise EdgeError("PAGE_TOKEN_INVALID", message, {"field": "page_token"}) from error
        start = f"({last_seen}" if last_seen else "-"
        key_ids = cast(list[str], await self._redis.zrangebylex(index, start, "+", 0, size + 1))
        records = [record for key_id in key_ids[:size] if (record := await self.get(key_id))]
        next_token = page_tokens.encode(key_ids[size - 1]) if len(key_ids) > size else ""
        return records, next_token

    async def revoke(self, *, key_id: str, revoked_by: str) -> ApiKeyRecord:
        """Revokes a stored key; revoking a revoked key returns it unchanged."""
        if key_id in self._static:
            raise EdgeError(
                "FIELD_INVALID",
                "a static key (EDGE_API_SECRETS) is revoked by removing it from the configuration",
                metadata={"field": "key_id"},
            )
        record = await self.get(key_id)
        if record is None:
            raise EdgeError("API_KEY_NOT_FOUND", "no API key has this id", {"key_id": key_id})
        if record.revoked:
            return record
        revoked = replace(
            record,
            status=apikey_pb2.API_KEY_STATUS_REVOKED,
            revoked_by=revoked_by,
            revoked_at_ms=self._clock_ms(),
        )
        changed = {
            "status": str(revoked.status),
            "revoked_by": revoked_by,
            "revoked_at_ms": str(revoked.revoked_at_ms),
        }
        await self._redis.hset(_KEY_PREFIX + key_id, mapping=dict(changed.items()))
        return revoked


def _validate_new_key(
    request_id: str,
    account_id: str,
    label: str,
    permissions: Sequence[int],
    rate_limit_per_minute: int,
) -> None:
    if not request_id:
        raise EdgeError("IDEMPOTENCY_KEY_MISSING", "request_id is required")
    problems = {
        "account_id": not account_id or len(account_id) > 128,
        "label": len(label) > LABEL_LENGTH_MAX,
        "permissions": not permissions
        or any(permission not in apikey_pb2.Permission.values() for permission in permissions)
        or apikey_pb2.PERMISSION_UNSPECIFIED in permissions,
        "rate_limit_per_minute": rate_limit_per_minute > RATE_LIMIT_PER_MINUTE_MAX,
    }
    for field_name, bad in problems.items():
        if bad:
            raise EdgeError("FIELD_INVALID", f"{field_name} is invalid", {"field": field_name})
