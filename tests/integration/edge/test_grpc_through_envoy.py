"""Native gRPC on the same Envoy listener: signed calls (the scheme in
docs/api/authentication.md) reach the core with the authenticated account, unsigned
or forged ones are refused with the same ErrorInfo reasons REST gets, and operators
manage API keys over gRPC."""

from __future__ import annotations

from typing import cast

import grpc
import pytest
from exchange.apikey.v1 import apikey_pb2, apikey_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from google.protobuf import message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common.identity_headers import ACCOUNT_HEADER, OPERATOR_HEADER
from gateway.signing import grpc_metadata
from tests.integration.edge.harness import ALICE, OPERATOR, READER, now_ms
from tests.integration.edge.standin_core import StandInCore

PLACE = "/exchange.trading.v1.TradingService/PlaceOrder"


def _signed(
    key: tuple[str, str, str], method_path: str, request: message.Message, **extra: str
) -> tuple[tuple[str, str], ...]:
    metadata = grpc_metadata(
        key_id=key[0],
        secret=key[1],
        method_path=method_path,
        timestamp_ms=now_ms(),
        message=request.SerializeToString(),
    )
    return metadata + tuple(extra.items())


def _reason(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    call = cast(grpc.Call, error)
    status = rpc_status.from_call(call)
    assert status is not None, "no grpc-status-details-bin"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return call.code(), info.reason


def test_signed_grpc_order_reaches_the_core_as_the_keys_account(
    grpc_channel: grpc.Channel, standin_core: tuple[StandInCore, int]
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(grpc_channel)
    request = trading_pb2.PlaceOrderRequest(client_order_id="grpc-1", symbol="BTC-USDT", price=5)
    forged = {ACCOUNT_HEADER: "acct-bob", OPERATOR_HEADER: "operator-1"}
    response = stub.PlaceOrder(request, metadata=_signed(ALICE, PLACE, request, **forged))
    assert response.order.account_id == "acct-alice"
    seen = standin_core[0].calls[-1].metadata
    assert seen[ACCOUNT_HEADER] == "acct-alice"
    assert OPERATOR_HEADER not in seen


def test_grpc_failures_carry_the_same_reasons_as_rest(grpc_channel: grpc.Channel) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(grpc_channel)
    request = trading_pb2.PlaceOrderRequest(client_order_id="grpc-2", symbol="BTC-USDT")
    with pytest.raises(grpc.RpcError) as missing:
        stub.PlaceOrder(request)
    assert _reason(missing.value) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")

    # Signed over another message than the one sent.
    other = trading_pb2.PlaceOrderRequest(client_order_id="grpc-3", symbol="BTC-USDT")
    with pytest.raises(grpc.RpcError) as tampered:
        stub.PlaceOrder(request, metadata=_signed(ALICE, PLACE, other))
    assert _reason(tampered.value) == (grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_INVALID")

    metadata = _signed(ALICE, PLACE, request)
    stub.PlaceOrder(request, metadata=metadata)
    with pytest.raises(grpc.RpcError) as replayed:
        stub.PlaceOrder(request, metadata=metadata)
    assert _reason(replayed.value) == (grpc.StatusCode.UNAUTHENTICATED, "REQUEST_REPLAYED")

    with pytest.raises(grpc.RpcError) as denied:
        stub.PlaceOrder(request, metadata=_signed(READER, PLACE, request))
    assert _reason(denied.value) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


def test_operators_manage_keys_over_grpc_and_traders_cannot(grpc_channel: grpc.Channel) -> None:
    stub = apikey_pb2_grpc.ApiKeyServiceStub(grpc_channel)
    create_path = "/exchange.apikey.v1.ApiKeyService/CreateApiKey"
    request = apikey_pb2.CreateApiKeyRequest(
        request_id="grpc-create-1",
        account_id="acct-carol",
        permissions=[apikey_pb2.PERMISSION_READ],
    )
    created = stub.CreateApiKey(request, metadata=_signed(OPERATOR, create_path, request))
    assert created.api_key.account_id == "acct-carol"
    assert created.api_key.created_by == "operator-1"
    assert len(created.secret) == 64
    retried = stub.CreateApiKey(request, metadata=_signed(OPERATOR, create_path, request))
    assert retried.api_key.key_id == created.api_key.key_id
    assert retried.secret == ""

    listing = apikey_pb2.ListApiKeysRequest(account_id="acct-carol")
    list_path = "/exchange.apikey.v1.ApiKeyService/ListApiKeys"
    keys = stub.ListApiKeys(listing, metadata=_signed(OPERATOR, list_path, listing))
    assert [key.key_id for key in keys.api_keys] == [created.api_key.key_id]

    with pytest.raises(grpc.RpcError) as refused:
        stub.ListApiKeys(listing, metadata=_signed(ALICE, list_path, listing))
    assert _reason(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_REQUIRED")

    # The new key signs trading reads at once.
    carol = (created.api_key.key_id, created.secret, "acct-carol")
    balances_path = "/exchange.trading.v1.TradingService/ListAccountBalances"
    query = trading_pb2.ListAccountBalancesRequest()
    trading = trading_pb2_grpc.TradingServiceStub(grpc_channel)
    balances = trading.ListAccountBalances(query, metadata=_signed(carol, balances_path, query))
    assert [balance.asset for balance in balances.balances] == ["USDT-of-acct-carol"]
