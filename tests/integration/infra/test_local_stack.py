"""The local exchange as a newcomer runs it, every component real (our Kafka-API broker,
PostgreSQL, Redis, core, ledger, streaming, gateway, Envoy), on free ports in a temporary var/:

`up` starts detached processes that are healthy, lists the markets, funds demo accounts
whose keys sign REST orders through Envoy, and a crossing trade reaches the ledger through
the broker; a second `up` changes nothing; `down` leaves no process and no open port; the
next `up` finds everything again: the engine's sequence, the ledger's balances, the API
keys, and the broker's topic from offset 0 - and the ledger goes on settling new events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.events.v1 import envelope_pb2
from exchange.ledger.types.v1 import types_pb2 as ledger_types_pb2
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from infra.local.demo_accounts import read_demo_keys
from infra.local.edge_client import ApiKey, place_limit_order, signed_request
from infra.local.ports import port_open
from infra.local.reference_data import STACK_OPERATOR_ID
from infra.local.supervisor import process_alive
from tests.support.local_stack import StackCommand, local_stack, wait_until

OPERATOR = (("x-exchange-operator-id", STACK_OPERATOR_ID),)
PRICE = 50_000 * 10**6  # USDT minor units per whole BTC
QUANTITY = 10**6  # 0.01 BTC
CORE_EVENTS_TOPIC = "core.events.v1"
COMPONENTS = 8  # broker, postgres, redis, core, ledger, streaming, gateway, envoy


@pytest.fixture
def stack() -> Iterator[StackCommand]:
    with local_stack() as command:  # the demo bots off: the balances below are exact
        yield command


def _engine_status(port: int) -> core_admin_pb2.GetEngineStatusResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        response: core_admin_pb2.GetEngineStatusResponse = admin.GetEngineStatus(
            core_admin_pb2.GetEngineStatusRequest(), metadata=OPERATOR, timeout=10
        )
        return response


def _ledger_balances(port: int, owner_id: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(asset, kind) -> (balance, last engine seq) of one owner, from the ledger's gRPC."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = ledger_pb2_grpc.LedgerServiceStub(channel).ListBalances(
            ledger_pb2.ListBalancesRequest(owner_id=owner_id), metadata=OPERATOR, timeout=10
        )
    return {
        (entry.account.asset, entry.account.kind): (entry.balance, entry.last_engine_seq)
        for entry in response.balances
    }


def _core_available(stack: StackCommand, key: ApiKey) -> dict[str, int]:
    """The account's available balances from the core, signed REST through Envoy."""
    answer = signed_request(stack.edge_url, "GET", "/v1/account/balances", key=key)
    assert answer.status == 200, answer.body
    return {entry["asset"]: int(entry["available"]) for entry in answer.json()["balances"]}


def _ledger_available(stack: StackCommand, account_id: str) -> dict[str, int]:
    return {
        asset: balance
        for (asset, kind), (balance, _seq) in _ledger_balances(
            stack.ports.ledger, account_id
        ).items()
        if kind == ledger_types_pb2.ACCOUNT_KIND_AVAILABLE
    }


def _place(stack: StackCommand, key: ApiKey, client_order_id: str, side: str) -> str:
    answer = place_limit_order(
        stack.edge_url,
        key,
        client_order_id=client_order_id,
        side=side,
        price=PRICE,
        quantity=QUANTITY,
    )
    assert answer.status == 200, answer.body
    status: str = answer.json()["order"]["status"]
    return status


async def _events_from_offset_zero(bootstrap_servers: str) -> list[envelope_pb2.EventEnvelope]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, max_poll_records=10_000
    )
    await consumer.start()
    try:
        partition = TopicPartition(CORE_EVENTS_TOPIC, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        envelopes: list[envelope_pb2.EventEnvelope] = []
        while True:
            batches = await consumer.getmany(timeout_ms=2_000)
            records = [record for batch in batches.values() for record in batch]
            if not records:
                return envelopes
            if not envelopes:
                assert records[0].offset == 0
            for record in records:
                envelope = envelope_pb2.EventEnvelope()
                envelope.ParseFromString(record.value or b"")
                envelopes.append(envelope)
    finally:
        await consumer.stop()


def test_up_trade_settles_down_and_everything_survives(stack: StackCommand) -> None:
    started = stack("up")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "markets: BTC-USDT, ETH-USDT" in started.stdout
    assert "smoke: a signed REST order through Envoy for demo-alice was accepted" in (
        started.stdout
    )
    assert stack("status").returncode == 0
    keys = read_demo_keys(stack.var / "demo-keys.json")
    alice, bob = keys["demo-alice"], keys["demo-bob"]
    assert alice.secret in started.stdout  # the keys are printed

    # A crossing trade through Envoy; the ledger settles it from the broker.
    assert _place(stack, alice, "sell-1", "SIDE_SELL") == "ORDER_STATUS_NEW"
    assert _place(stack, bob, "buy-1", "SIDE_BUY") == "ORDER_STATUS_FILLED"
    core_bob, core_alice = _core_available(stack, bob), _core_available(stack, alice)
    assert core_bob["BTC"] > 10 * 10**8  # bob bought (the demo funds are 10 BTC)
    wait_until(
        "the ledger's available balances equal the core's",
        lambda: (
            _ledger_available(stack, bob.account_id) == core_bob
            and _ledger_available(stack, alice.account_id) == core_alice
        ),
    )
    status = _engine_status(stack.ports.core)
    seq_before_restart = status.engine_seq
    wait_until(
        "the outbox published everything",
        lambda: _engine_status(stack.ports.core).published_engine_seq == seq_before_restart,
    )

    events_before_restart = asyncio.run(_events_from_offset_zero(f"127.0.0.1:{stack.ports.broker}"))
    assert max(envelope.engine_seq for envelope in events_before_restart) == seq_before_restart

    # A second `up` is a no-op: nothing starts, nothing is logged, the same keys.
    again = stack("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == COMPONENTS
    assert _engine_status(stack.ports.core).engine_seq == seq_before_restart
    assert read_demo_keys(stack.var / "demo-keys.json") == keys

    pids = [int(path.read_text()) for path in (stack.var / "run").glob("*.pid")]
    assert len(pids) == COMPONENTS
    stopped = stack("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stack("status").returncode == 1
    assert not [pid for pid in pids if process_alive(pid)]
    open_ports = [port for port in vars(stack.ports).values() if port_open(port)]
    assert open_ports == []

    restarted = stack("up")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert read_demo_keys(stack.var / "demo-keys.json") == keys
    # The core recovered its sequence (the smoke order of this `up` came after it).
    assert _engine_status(stack.ports.core).engine_seq > seq_before_restart
    # The keys still sign (Redis's append-only file, the gateway's kept master secret),
    # and the core's balances are those from before.
    assert _core_available(stack, bob) == core_bob
    # The broker kept its topic: every event from before, from offset 0.
    envelopes = asyncio.run(_events_from_offset_zero(f"127.0.0.1:{stack.ports.broker}"))
    assert envelopes[: len(events_before_restart)] == events_before_restart
    # The ledger kept its journal and settles what happened after the restart (the
    # smoke order reserved and released demo-alice's USDT).
    assert _ledger_available(stack, bob.account_id) == core_bob
    wait_until(
        "the ledger settles events published after the restart",
        lambda: (
            _ledger_balances(stack.ports.ledger, alice.account_id)[
                ("USDT", ledger_types_pb2.ACCOUNT_KIND_AVAILABLE)
            ][1]
            > seq_before_restart
        ),
    )
