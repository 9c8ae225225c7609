"""What the end-to-end tests reach besides the SDK: the operator's gRPC calls on the
stack's core and ledger ports (identity `x-exchange-operator-id`, as the ledger
authorizes operators), and "has everything settled?" questions asked of both."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.events.v1 import envelope_pb2
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from exchange_sdk import AsyncClient, Client

from infra.local.components import CORE_SHARD_ID
from infra.local.edge_client import ApiKey
from infra.local.reference_data import STACK_OPERATOR_ID
from tests.support.local_stack import StackCommand, wait_until

ALL_MARKETS = "-"  # GetReconciliation: the whole shard
Metadata = tuple[tuple[str, str], ...]


def operator(operator_id: str = STACK_OPERATOR_ID) -> Metadata:
    return (("x-exchange-operator-id", operator_id),)


def client(stack: StackCommand, key: ApiKey) -> Client:
    """The SDK's blocking client for a trader, through the stack's Envoy."""
    return Client(stack.edge_address, api_key=key.key_id, api_secret=key.secret)


def async_client(stack: StackCommand, key: ApiKey) -> AsyncClient:
    """The SDK's asyncio client for a trader, through the stack's Envoy."""
    return AsyncClient(stack.edge_address, api_key=key.key_id, api_secret=key.secret)


@contextmanager
def ledger(stack: StackCommand) -> Iterator[ledger_pb2_grpc.LedgerServiceStub]:
    with grpc.insecure_channel(stack.ledger_address) as channel:
        yield ledger_pb2_grpc.LedgerServiceStub(channel)


def engine_status(stack: StackCommand) -> core_admin_pb2.GetEngineStatusResponse:
    with grpc.insecure_channel(stack.core_address) as channel:
        answer: core_admin_pb2.GetEngineStatusResponse = core_admin_pb2_grpc.CoreAdminServiceStub(
            channel
        ).GetEngineStatus(core_admin_pb2.GetEngineStatusRequest(), metadata=operator(), timeout=10)
        return answer


def reconciliation(
    stack: StackCommand, at_engine_seq: int
) -> ledger_types_pb2.ReconciliationReport:
    with ledger(stack) as service:
        answer: ledger_pb2.GetReconciliationResponse = service.GetReconciliation(
            ledger_pb2.GetReconciliationRequest(symbol=ALL_MARKETS, at_engine_seq=at_engine_seq),
            metadata=operator(),
            timeout=30,
        )
    return answer.report


MARKER_ACCOUNT = "e2e-settlement-marker"


def deposit(stack: StackCommand, account_id: str, transfer_id: str, amount: int) -> None:
    """A USDT deposit (minor units) as the operator, through the core's FundingService."""
    with grpc.insecure_channel(stack.core_address) as channel:
        funding_pb2_grpc.FundingServiceStub(channel).CreateDeposit(
            funding_pb2.CreateDepositRequest(
                transfer_id=transfer_id, account_id=account_id, asset="USDT", amount=amount
            ),
            metadata=operator(),
            timeout=10,
        )


def settled_reconciliation(
    stack: StackCommand, *, timeout_seconds: float = 60.0
) -> ledger_types_pb2.ReconciliationReport:
    """Waits until the outbox published every event up to the core's engine_seq and the
    ledger posted them; then reconciles the whole shard at that engine_seq.

    The last commands may have produced no event (a retried PlaceOrder answered from the
    engine's idempotency): the core reports the last seq with events, so the ledger is not
    BEHIND once it posted that one. LAGGING (the ledger lags the core's newest events past
    the ledger's bound) is asked again too, until the timeout: then it is the answer."""
    engine_seq = engine_status(stack).engine_seq
    wait_until(
        f"the outbox published up to engine_seq {engine_seq}",
        lambda: engine_status(stack).published_engine_seq >= engine_seq,
        timeout_seconds=timeout_seconds,
    )
    deadline = time.monotonic() + timeout_seconds
    while True:
        report = reconciliation(stack, engine_seq)
        behind = report.status == ledger_types_pb2.RECONCILIATION_STATUS_BEHIND
        lagging = report.status == ledger_types_pb2.RECONCILIATION_STATUS_LAGGING
        if not (behind or lagging):
            return report
        if time.monotonic() >= deadline:
            assert not behind, (
                f"the ledger did not post up to engine_seq {engine_seq} within "
                f"{timeout_seconds}s; last report: {report}"
            )
            return report  # LAGGING: not exact, the caller says so
        time.sleep(0.2)


def invariant_violations(stack: StackCommand) -> list[str]:
    with ledger(stack) as service:
        answer = service.CheckInvariants(
            ledger_pb2.CheckInvariantsRequest(), metadata=operator(), timeout=30
        )
    return [f"{violation.invariant}: {violation.detail}" for violation in answer.violations]


def ledger_balances(stack: StackCommand, owner_id: str) -> dict[tuple[str, int], int]:
    """(asset, account kind) -> balance in minor units, of one owner."""
    balances: dict[tuple[str, int], int] = {}
    page_token = ""
    with ledger(stack) as service:
        while True:
            answer = service.ListBalances(
                ledger_pb2.ListBalancesRequest(owner_id=owner_id, page_token=page_token),
                metadata=operator(),
                timeout=10,
            )
            for entry in answer.balances:
                balances[(entry.account.asset, entry.account.kind)] = entry.balance
            page_token = answer.next_page_token
            if not page_token:
                return balances


def ledger_trader_balances(stack: StackCommand, owner_id: str) -> dict[str, tuple[int, int]]:
    """asset -> (AVAILABLE, HELD) of one trader in the ledger, zero pairs left out."""
    balances = ledger_balances(stack, owner_id)
    assets = {asset for asset, _kind in balances}
    pairs = {
        asset: (
            balances.get((asset, ledger_types_pb2.ACCOUNT_KIND_AVAILABLE), 0),
            balances.get((asset, ledger_types_pb2.ACCOUNT_KIND_HELD), 0),
        )
        for asset in assets
    }
    return {asset: pair for asset, pair in pairs.items() if pair != (0, 0)}


def core_trader_balances(stack: StackCommand, account_id: str) -> dict[str, tuple[int, int]]:
    """asset -> (available, held) of one trader in the core (operator's GetEngineBalances)."""
    with grpc.insecure_channel(stack.core_address) as channel:
        answer = core_admin_pb2_grpc.CoreAdminServiceStub(channel).GetEngineBalances(
            core_admin_pb2.GetEngineBalancesRequest(account_id=account_id),
            metadata=operator(),
            timeout=10,
        )
    pairs = {entry.asset: (entry.available, entry.held) for entry in answer.balances}
    return {asset: pair for asset, pair in pairs.items() if pair != (0, 0)}


def trade_reference(trade_id: str) -> str:
    """A TRADE entry's reference in the ledger (`<shard>:<trade_id>`)."""
    return f"{CORE_SHARD_ID}:{trade_id}"


@asynccontextmanager
async def _reader_from_offset_zero(
    bootstrap_servers: str, topic: str
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of every partition of `topic` from offset 0 (manual assignment: no
    consumer-group join)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        # Every topic's metadata (as gateway/market_data/consumer.py asks it): the client's
        # own cluster view holds only the topics it tracks, and a broker answers the
        # bootstrap's empty topic list with none (Tansu answered it with all).
        cluster = await consumer._client.fetch_all_metadata()  # no public equivalent
        partitions = [
            TopicPartition(topic, partition)
            for partition in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        assert partitions, f"the broker has no topic {topic}"
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, 0)
        yield consumer
    finally:
        await consumer.stop()


def _envelope(value: bytes | None) -> envelope_pb2.EventEnvelope:
    envelope = envelope_pb2.EventEnvelope()
    envelope.ParseFromString(value or b"")
    return envelope


async def find_envelope(
    bootstrap_servers: str,
    topic: str,
    wanted: Callable[[envelope_pb2.EventEnvelope], bool],
    *,
    timeout_seconds: float = 20.0,
) -> envelope_pb2.EventEnvelope:
    """The first envelope of `topic` that `wanted` accepts; fails after `timeout_seconds`."""
    async with _reader_from_offset_zero(bootstrap_servers, topic) as consumer:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    envelope = _envelope(record.value)
                    if wanted(envelope):
                        return envelope
    raise AssertionError(f"no such event on {topic} within {timeout_seconds}s")


async def topic_envelopes(bootstrap_servers: str, topic: str) -> list[envelope_pb2.EventEnvelope]:
    """Every envelope of `topic` so far (read until a poll of 2 s brings nothing)."""
    envelopes: list[envelope_pb2.EventEnvelope] = []
    async with _reader_from_offset_zero(bootstrap_servers, topic) as consumer:
        while batches := await consumer.getmany(timeout_ms=2_000):
            envelopes += [
                _envelope(record.value) for records in batches.values() for record in records
            ]
    return envelopes
