"""The local exchange's demo traders: accounts funded through the core's FundingService and
API keys created through the gateway's ApiKeyService, both as the stack's operator.

Idempotent, so `infra/up.sh` runs it on every start:
- a deposit's `transfer_id` is fixed per account and asset, so a repeated deposit is the
  same transfer (the engine deduplicates it durably) and funds once; a deposit the core
  already knows is not sent again at all, so a repeated `up` logs nothing;
- a key's secret is shown only when it is created, so the keys are kept in
  `var/demo-keys.json` (0600) and reused while the gateway still knows them (its keys live
  in Redis with an append-only file, and its master secret in `var/gateway/`); a key the
  gateway does not know any more is created again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Final

import grpc
from exchange.apikey.v1 import apikey_pb2, apikey_pb2_grpc
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc

from common.identity_headers import operator_metadata
from infra.local.edge_client import ApiKey, place_limit_order
from infra.local.reference_data import STACK_OPERATOR_ID

OPERATOR_METADATA: Final = operator_metadata(STACK_OPERATOR_ID)
# The README's example users, and the demo bots' own accounts: the bots never trade as the
# example users, so their quotes cannot stand in front of an example's order (self-trade
# prevention would cancel it) nor change the balances the examples print.
EXAMPLE_ACCOUNTS: Final = ("demo-alice", "demo-bob")
BOT_ACCOUNTS: Final = ("demo-maker", "demo-taker")
DEMO_ACCOUNTS: Final = (*EXAMPLE_ACCOUNTS, *BOT_ACCOUNTS)
# Minor units (asset scales of reference_data.ASSETS): 1,000,000 USDT, 10 BTC, 100 ETH.
DEMO_FUNDS: Final = (("USDT", 1_000_000 * 10**6), ("BTC", 10 * 10**8), ("ETH", 100 * 10**8))
TRADER_PERMISSIONS: Final = (
    apikey_pb2.PERMISSION_READ,
    apikey_pb2.PERMISSION_TRADE,
    apikey_pb2.PERMISSION_WITHDRAW,
)
# The operator key signs admin REST/gRPC calls through Envoy; its account is the operator id.
OPERATOR_KEY_NAME: Final = "operator"


def fund_demo_accounts(core_address: str, *, timeout_seconds: float = 10.0) -> None:
    """Deposit DEMO_FUNDS into every demo account, once (transfer ids are fixed)."""
    fund_accounts(core_address, DEMO_ACCOUNTS, timeout_seconds=timeout_seconds)


def fund_accounts(
    core_address: str,
    account_ids: Sequence[str],
    funds: Sequence[tuple[str, int]] = DEMO_FUNDS,
    *,
    timeout_seconds: float = 10.0,
) -> None:
    """Deposit `funds` (asset, minor units) into each account, once: the transfer id is
    fixed per account and asset (more traders for a local exchange, or for tests)."""
    with grpc.insecure_channel(core_address) as channel:
        funding = funding_pb2_grpc.FundingServiceStub(channel)
        for account_id in account_ids:
            for asset, amount in funds:
                transfer_id = f"demo-funding-{account_id}-{asset}"
                if _transfer_known(funding, transfer_id, timeout_seconds):
                    continue  # a repeated deposit would fund once but still be logged
                funding.CreateDeposit(
                    funding_pb2.CreateDepositRequest(
                        transfer_id=transfer_id,
                        account_id=account_id,
                        asset=asset,
                        amount=amount,
                    ),
                    metadata=OPERATOR_METADATA,
                    timeout=timeout_seconds,
                    wait_for_ready=True,
                )


def _found(get: Callable[[], object]) -> object | None:
    """The answer of an operator's Get call, or None when it is NOT_FOUND."""
    try:
        return get()
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def _transfer_known(
    funding: funding_pb2_grpc.FundingServiceStub, transfer_id: str, timeout_seconds: float
) -> bool:
    request = funding_pb2.GetTransferRequest(transfer_id=transfer_id)
    answer = _found(
        lambda: funding.GetTransfer(
            request, metadata=OPERATOR_METADATA, timeout=timeout_seconds, wait_for_ready=True
        )
    )
    return answer is not None


def demo_keys(
    gateway_grpc_address: str, keys_file: Path, *, timeout_seconds: float = 10.0
) -> dict[str, ApiKey]:
    """The demo keys by name (each account, and OPERATOR_KEY_NAME), created when missing."""
    stored = _read_keys(keys_file)
    wanted: dict[str, tuple[str, Sequence[apikey_pb2.Permission.ValueType]]] = {
        account: (account, TRADER_PERMISSIONS) for account in DEMO_ACCOUNTS
    }
    wanted[OPERATOR_KEY_NAME] = (STACK_OPERATOR_ID, (apikey_pb2.PERMISSION_OPERATE,))
    keys: dict[str, ApiKey] = {}
    with grpc.insecure_channel(gateway_grpc_address) as channel:
        service = apikey_pb2_grpc.ApiKeyServiceStub(channel)
        for name, (account_id, permissions) in wanted.items():
            known = stored.get(name)
            if known is not None and _still_valid(service, known, timeout_seconds):
                keys[name] = known
                continue
            keys[name] = _create_key(service, name, account_id, permissions, timeout_seconds)
    _write_keys(keys_file, keys)
    return keys


def trader_keys(
    gateway_grpc_address: str,
    account_ids: Sequence[str],
    *,
    rate_limit_per_minute: int = 0,
    timeout_seconds: float = 10.0,
) -> dict[str, ApiKey]:
    """A new trading key (read, trade, withdraw) for each account, by account id; not stored
    (more traders for a local exchange, or for tests). `rate_limit_per_minute` 0 leaves the
    gateway's default (EDGE_RATE_LIMIT_PER_MINUTE)."""
    with grpc.insecure_channel(gateway_grpc_address) as channel:
        service = apikey_pb2_grpc.ApiKeyServiceStub(channel)
        return {
            account_id: _create_key(
                service,
                account_id,
                account_id,
                TRADER_PERMISSIONS,
                timeout_seconds,
                rate_limit_per_minute=rate_limit_per_minute,
            )
            for account_id in account_ids
        }


def _create_key(
    service: apikey_pb2_grpc.ApiKeyServiceStub,
    name: str,
    account_id: str,
    permissions: Sequence[apikey_pb2.Permission.ValueType],
    timeout_seconds: float,
    *,
    rate_limit_per_minute: int = 0,
) -> ApiKey:
    response = service.CreateApiKey(
        apikey_pb2.CreateApiKeyRequest(
            request_id=f"demo-key-{name}-{time.time_ns()}",
            account_id=account_id,
            label=f"local demo: {name}",
            permissions=permissions,
            rate_limit_per_minute=rate_limit_per_minute,
        ),
        metadata=OPERATOR_METADATA,
        timeout=timeout_seconds,
        wait_for_ready=True,
    )
    return ApiKey(response.api_key.key_id, response.secret, account_id)


def _still_valid(
    service: apikey_pb2_grpc.ApiKeyServiceStub, key: ApiKey, timeout_seconds: float
) -> bool:
    request = apikey_pb2.GetApiKeyRequest(key_id=key.key_id)
    answer = _found(
        lambda: service.GetApiKey(
            request, metadata=OPERATOR_METADATA, timeout=timeout_seconds, wait_for_ready=True
        )
    )
    return (
        isinstance(answer, apikey_pb2.GetApiKeyResponse)
        and answer.api_key.status == apikey_pb2.API_KEY_STATUS_ACTIVE
    )


def _read_keys(keys_file: Path) -> dict[str, ApiKey]:
    try:
        document = json.loads(keys_file.read_text())
    except FileNotFoundError:
        return {}
    return {name: ApiKey(**fields) for name, fields in document.items()}


def _write_keys(keys_file: Path, keys: dict[str, ApiKey]) -> None:
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = keys_file.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as output:
        json.dump({name: asdict(key) for name, key in keys.items()}, output, indent=2)
    temporary.replace(keys_file)


def read_demo_keys(keys_file: Path) -> dict[str, ApiKey]:
    """The keys a previous `up` stored (empty when there are none)."""
    return _read_keys(keys_file)


def smoke_order(edge_url: str, key: ApiKey) -> str:
    """Place a signed REST order through Envoy: an IOC buy of 0.0001 BTC at 46,000 USDT
    (below the reference price, so it normally expires unfilled and leaves nothing open).
    Returns the order's status; raises RuntimeError unless the core accepted it."""
    answer = place_limit_order(
        edge_url,
        key,
        client_order_id=f"smoke-{time.time_ns()}",
        side="SIDE_BUY",
        price=46_000 * 10**6,
        quantity=10**4,
        time_in_force="TIME_IN_FORCE_IOC",
    )
    if answer.status != 200:
        message = f"smoke order through Envoy refused: HTTP {answer.status} {answer.body!r}"
        raise RuntimeError(message)
    status: str = answer.json()["order"]["status"]
    return status
