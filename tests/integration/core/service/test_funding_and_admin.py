"""FundingService and CoreAdminService against a real server and WAL."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2
from exchange.funding.v1 import funding_pb2
from exchange.trading.v1 import trading_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.engine.testing import BTC, USDT
from core.service.admin import CANARY_MAKER_ACCOUNT_ID, CANARY_TAKER_ACCOUNT_ID
from core.service.testing import btc_usdt_market, deposit, operator, trader
from tests.integration.core.service.service_harness import LOT, PRICE, Harness, expect_error

OPERATOR = operator()
ALICE = trader("alice")


async def test_deposit_withdraw_adjust_and_list(service: Harness) -> None:
    deposited = await service.funding.CreateDeposit(
        funding_pb2.CreateDepositRequest(
            transfer_id="d-1", account_id="carol", asset="USDT", amount=500 * USDT, reference="tx-9"
        ),
        metadata=OPERATOR,
    )
    assert deposited.transfer.status == funding_pb2.TRANSFER_STATUS_COMPLETED
    assert deposited.transfer.operator_id == "operator-1"
    again = await service.funding.CreateDeposit(
        funding_pb2.CreateDepositRequest(
            transfer_id="d-1", account_id="carol", asset="USDT", amount=500 * USDT, reference="tx-9"
        ),
        metadata=OPERATOR,
    )
    assert again.transfer == deposited.transfer
    await expect_error(
        service.funding.CreateDeposit(
            funding_pb2.CreateDepositRequest(
                transfer_id="d-1", account_id="carol", asset="USDT", amount=1 * USDT
            ),
            metadata=OPERATOR,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_KEY_REUSED",
    )
    carol = trader("carol")
    withdrawn = await service.funding.CreateWithdrawal(
        funding_pb2.CreateWithdrawalRequest(transfer_id="w-1", asset="USDT", amount=100 * USDT),
        metadata=carol,
    )
    assert withdrawn.transfer.kind == funding_pb2.TRANSFER_KIND_WITHDRAWAL
    await expect_error(
        service.funding.CreateWithdrawal(
            funding_pb2.CreateWithdrawalRequest(
                transfer_id="w-2", asset="USDT", amount=10**6 * USDT
            ),
            metadata=carol,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_BALANCE",
    )
    adjusted = await service.funding.CreateBalanceAdjustment(
        funding_pb2.CreateBalanceAdjustmentRequest(
            transfer_id="a-1",
            account_id="carol",
            asset="USDT",
            amount=-50 * USDT,
            memo="fee refund",
        ),
        metadata=OPERATOR,
    )
    assert adjusted.transfer.amount == -50 * USDT
    balances = await service.trading.ListAccountBalances(
        trading_pb2.ListAccountBalancesRequest(), metadata=carol
    )
    assert [(balance.asset, balance.available) for balance in balances.balances] == [
        ("USDT", 350 * USDT)
    ]
    rejected = await service.funding.GetTransfer(
        funding_pb2.GetTransferRequest(transfer_id="w-2"), metadata=carol
    )
    assert rejected.transfer.status == funding_pb2.TRANSFER_STATUS_REJECTED
    listed = await service.funding.ListTransfers(funding_pb2.ListTransfersRequest(), metadata=carol)
    assert [transfer.transfer_id for transfer in listed.transfers] == ["a-1", "w-2", "w-1", "d-1"]
    others = await service.funding.ListTransfers(funding_pb2.ListTransfersRequest(), metadata=ALICE)
    assert "d-1" not in [transfer.transfer_id for transfer in others.transfers]
    await expect_error(
        service.funding.GetTransfer(
            funding_pb2.GetTransferRequest(transfer_id="d-1"), metadata=ALICE
        ),
        grpc.StatusCode.NOT_FOUND,
        "TRANSFER_NOT_FOUND",
    )
    by_operator = await service.funding.GetTransfer(
        funding_pb2.GetTransferRequest(transfer_id="d-1"), metadata=OPERATOR
    )
    assert by_operator.transfer.account_id == "carol"


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("call", "request_message", "metadata", "code", "reason"),
    [
        (
            "CreateDeposit",
            funding_pb2.CreateDepositRequest(account_id="x", asset="USDT", amount=1),
            OPERATOR,
            INVALID,
            "IDEMPOTENCY_KEY_MISSING",
        ),
        (
            "CreateDeposit",
            funding_pb2.CreateDepositRequest(
                transfer_id="t", account_id="x", asset="USDT", amount=0
            ),
            OPERATOR,
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "CreateDeposit",
            funding_pb2.CreateDepositRequest(transfer_id="t", asset="USDT", amount=1),
            OPERATOR,
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "CreateDeposit",
            funding_pb2.CreateDepositRequest(
                transfer_id="t", account_id="x", asset="DOGE", amount=1
            ),
            OPERATOR,
            grpc.StatusCode.NOT_FOUND,
            "ASSET_UNKNOWN",
        ),
        (
            "CreateDeposit",
            funding_pb2.CreateDepositRequest(
                transfer_id="t", account_id="x", asset="USDT", amount=1
            ),
            ALICE,
            grpc.StatusCode.PERMISSION_DENIED,
            "OPERATOR_REQUIRED",
        ),
        (
            "CreateWithdrawal",
            funding_pb2.CreateWithdrawalRequest(transfer_id="t", asset="USDT", amount=-5),
            ALICE,
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "CreateWithdrawal",
            funding_pb2.CreateWithdrawalRequest(transfer_id="t", asset="USDT", amount=5),
            (),
            grpc.StatusCode.UNAUTHENTICATED,
            "API_KEY_MISSING",
        ),
        (
            "CreateBalanceAdjustment",
            funding_pb2.CreateBalanceAdjustmentRequest(
                transfer_id="t", account_id="x", asset="USDT", amount=5
            ),
            OPERATOR,
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "CreateBalanceAdjustment",
            funding_pb2.CreateBalanceAdjustmentRequest(
                transfer_id="t", account_id="alice", asset="USDT", amount=-(10**13), memo="m"
            ),
            OPERATOR,
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_BALANCE",
        ),
        (
            "CreateBalanceAdjustment",
            funding_pb2.CreateBalanceAdjustmentRequest(
                transfer_id="t", account_id="x", asset="USDT", amount=5, memo="m"
            ),
            ALICE,
            grpc.StatusCode.PERMISSION_DENIED,
            "OPERATOR_REQUIRED",
        ),
        (
            "ListTransfers",
            funding_pb2.ListTransfersRequest(kind=7),  # type: ignore[arg-type]
            ALICE,
            INVALID,
            "FIELD_INVALID",
        ),
    ],
)
async def test_funding_errors_reach_the_client_by_name(
    service: Harness,
    call: str,
    request_message: Any,
    metadata: Any,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    await expect_error(
        getattr(service.funding, call)(request_message, metadata=metadata), code, reason
    )


ADMIN_CALLS = [
    (
        "CreateAsset",
        core_admin_pb2.CreateAssetRequest(
            asset=types_pb2.Asset(asset="ETH", scale=18), request_id="r"
        ),
    ),
    ("CreateMarket", core_admin_pb2.CreateMarketRequest(market=btc_usdt_market(), request_id="r")),
    (
        "SetMarketMode",
        core_admin_pb2.SetMarketModeRequest(
            symbol="BTC-USDT", mode=types_pb2.MARKET_MODE_HALTED, request_id="r"
        ),
    ),
    ("TakeSnapshot", core_admin_pb2.TakeSnapshotRequest()),
    ("GetStateHash", core_admin_pb2.GetStateHashRequest()),
    ("GetEngineBalances", core_admin_pb2.GetEngineBalancesRequest()),
    ("GetEngineStatus", core_admin_pb2.GetEngineStatusRequest()),
    ("PlaceCanaryTrade", core_admin_pb2.PlaceCanaryTradeRequest(symbol="BTC-USDT", request_id="r")),
]


@pytest.mark.parametrize(("call", "request_message"), ADMIN_CALLS)
async def test_admin_without_an_operator_is_refused(
    service: Harness, call: str, request_message: Any
) -> None:
    for metadata in ((), ALICE):
        await expect_error(
            getattr(service.admin, call)(request_message, metadata=metadata),
            grpc.StatusCode.PERMISSION_DENIED,
            "OPERATOR_REQUIRED",
        )


@pytest.mark.parametrize(
    ("call", "request_message", "code", "reason"),
    [
        (
            "CreateAsset",
            core_admin_pb2.CreateAssetRequest(
                asset=types_pb2.Asset(asset="BTC", scale=6), request_id="r"
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "ASSET_ALREADY_EXISTS",
        ),
        (
            "CreateAsset",
            core_admin_pb2.CreateAssetRequest(
                asset=types_pb2.Asset(asset="ETH", scale=19), request_id="r"
            ),
            INVALID,
            "MARKET_CONFIG_INVALID",
        ),
        (
            "CreateAsset",
            core_admin_pb2.CreateAssetRequest(asset=types_pb2.Asset(asset="ETH", scale=8)),
            INVALID,
            "IDEMPOTENCY_KEY_MISSING",
        ),
        (
            "CreateMarket",
            core_admin_pb2.CreateMarketRequest(
                market=types_pb2.Market(symbol="X-Y", base_asset="BTC", quote_asset="USDT"),
                request_id="r",
            ),
            INVALID,
            "MARKET_CONFIG_INVALID",
        ),
        (
            "SetMarketMode",
            core_admin_pb2.SetMarketModeRequest(symbol="BTC-USDT", request_id="r"),
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "SetMarketMode",
            core_admin_pb2.SetMarketModeRequest(
                symbol="NOPE", mode=types_pb2.MARKET_MODE_CANCEL_ONLY, request_id="r"
            ),
            grpc.StatusCode.NOT_FOUND,
            "SYMBOL_UNKNOWN",
        ),
        (
            "GetStateHash",
            core_admin_pb2.GetStateHashRequest(at_engine_seq=10**9),
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "PlaceCanaryTrade",
            core_admin_pb2.PlaceCanaryTradeRequest(symbol="BTC-USDT", request_id="r"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_BALANCE",
        ),
    ],
)
async def test_admin_errors_reach_the_client_by_name(
    service: Harness, call: str, request_message: Any, code: grpc.StatusCode, reason: str
) -> None:
    await expect_error(
        getattr(service.admin, call)(request_message, metadata=OPERATOR), code, reason
    )


async def test_listing_again_is_idempotent_and_modes_apply(service: Harness) -> None:
    again = await service.admin.CreateMarket(
        core_admin_pb2.CreateMarketRequest(market=btc_usdt_market(), request_id="again"),
        metadata=OPERATOR,
    )
    assert again.market.mode == types_pb2.MARKET_MODE_NORMAL
    assert again.market.price_tick == btc_usdt_market().price_tick
    halted = await service.admin.SetMarketMode(
        core_admin_pb2.SetMarketModeRequest(
            symbol="BTC-USDT", mode=types_pb2.MARKET_MODE_HALTED, reason="test", request_id="h"
        ),
        metadata=OPERATOR,
    )
    assert halted.market.mode == types_pb2.MARKET_MODE_HALTED
    await expect_error(
        service.place("alice", "halted", types_pb2.SIDE_BUY, LOT, PRICE),
        grpc.StatusCode.FAILED_PRECONDITION,
        "MARKET_HALTED",
    )
    status = await service.admin.GetEngineStatus(
        core_admin_pb2.GetEngineStatusRequest(), metadata=OPERATOR
    )
    assert status.engine_seq == status.durable_engine_seq > 0
    assert status.epoch == 1
    assert [(market.symbol, market.mode) for market in status.markets] == [
        ("BTC-USDT", types_pb2.MARKET_MODE_HALTED)
    ]


async def test_snapshot_hash_and_balances_at_an_earlier_seq(service: Harness) -> None:
    await service.place("alice", "h-1", types_pb2.SIDE_BUY, LOT, PRICE - USDT)
    snapshot = await service.admin.TakeSnapshot(
        core_admin_pb2.TakeSnapshotRequest(), metadata=OPERATOR
    )
    before = await service.admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(account_id="alice"), metadata=OPERATOR
    )
    assert before.engine_seq == snapshot.engine_seq
    await service.place("alice", "h-2", types_pb2.SIDE_BUY, 2 * LOT, PRICE - 2 * USDT)
    await deposit(service.channel, "dave", "BTC", BTC)
    at_snapshot = await service.admin.GetStateHash(
        core_admin_pb2.GetStateHashRequest(at_engine_seq=snapshot.engine_seq), metadata=OPERATOR
    )
    assert at_snapshot.state_hash == snapshot.state_hash
    now = await service.admin.GetStateHash(core_admin_pb2.GetStateHashRequest(), metadata=OPERATOR)
    assert now.state_hash != snapshot.state_hash
    # Rebuilt from the WAL (a seq between the snapshot and now) and from the snapshot.
    one_after = await service.admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(
            at_engine_seq=snapshot.engine_seq, account_id="alice"
        ),
        metadata=OPERATOR,
    )
    assert one_after.balances == before.balances
    before_snapshot = await service.admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(
            at_engine_seq=snapshot.engine_seq - 1, asset="USDT"
        ),
        metadata=OPERATOR,
    )
    alice_usdt = [balance for balance in before_snapshot.balances if balance.account_id == "alice"]
    assert alice_usdt[0].held == 0
    everything = await service.admin.GetEngineBalances(
        core_admin_pb2.GetEngineBalancesRequest(), metadata=OPERATOR
    )
    assert ("dave", "BTC") in [
        (balance.account_id, balance.asset) for balance in everything.balances
    ]


async def test_canary_trade_crosses_between_the_canary_accounts(service: Harness) -> None:
    await deposit(service.channel, CANARY_MAKER_ACCOUNT_ID, "BTC", BTC)
    await deposit(service.channel, CANARY_TAKER_ACCOUNT_ID, "USDT", 100_000 * USDT)
    await service.place("bob", "ask", types_pb2.SIDE_SELL, LOT, PRICE)  # the best ask
    request = core_admin_pb2.PlaceCanaryTradeRequest(symbol="BTC-USDT", request_id="canary-1")
    trade = await service.admin.PlaceCanaryTrade(request, metadata=OPERATOR)
    assert trade.price == PRICE - USDT // 100  # one tick below bob's ask: bob is not touched
    assert trade.quantity == LOT
    assert await service.admin.PlaceCanaryTrade(request, metadata=OPERATOR) == trade
    bob_orders = await service.trading.ListOrders(
        trading_pb2.ListOrdersRequest(open_only=True), metadata=trader("bob")
    )
    assert bob_orders.orders[0].remaining_quantity == LOT


async def test_health_reports_serving(service: Harness) -> None:
    health = health_pb2_grpc.HealthStub(service.channel)
    for name in ("", "exchange.trading.v1.TradingService", "exchange.core.v1.CoreAdminService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
