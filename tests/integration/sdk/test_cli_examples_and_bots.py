"""The `exchange` CLI, the README's examples (sdk/examples) and the demo bots, as a user
runs them, against the real edge: keys from a var/demo-keys.json-style file, market rules
from a saved `GET /v1/markets`-style file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from exchange.marketdata.v1 import marketdata_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange_sdk import OrderStatus, PlaceOrder
from exchange_sdk.demo import market_maker, taker
from exchange_sdk.demo._common import reference_price
from google.protobuf import json_format

from infra.local.reference_data import MARKETS
from tests.integration.edge.harness import ALICE, BOB
from tests.integration.sdk.conftest import SdkEdge, until
from tests.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "sdk" / "examples"


@pytest.fixture(scope="module")
def user_environment(sdk_edge: SdkEdge, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("sdk-user")
    keys = directory / "demo-keys.json"
    keys.write_text(
        json.dumps(
            {
                f"demo-{name}": {"key_id": key[0], "secret": key[1], "account_id": key[2]}
                for name, key in (("alice", ALICE), ("bob", BOB))
            }
        )
    )
    markets = directory / "markets.json"
    markets.write_text(
        json_format.MessageToJson(marketdata_pb2.ListMarketsResponse(markets=MARKETS))
    )
    return {
        "EXCHANGE_ENDPOINT": sdk_edge.endpoint,
        "EXCHANGE_KEYS_FILE": str(keys),
        "EXCHANGE_MARKETS_FILE": str(markets),
    }


@pytest.fixture
def environment(user_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    saved = dict(os.environ)
    os.environ.update(user_environment)
    try:
        yield {**saved, **user_environment}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _exchange(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "exchange"), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_cli_place_orders_cancel_and_balances(environment: dict[str, str]) -> None:
    placed = _exchange(
        environment, "--json", "place", "BTC-USDT", "buy", "0.002", "--price", "46000.5"
    )
    assert placed.returncode == 0, placed.stderr
    order = json.loads(placed.stdout.splitlines()[0])
    assert (order["status"], order["price"], order["quantity"]) == (
        "new",
        "46000.500000",
        "0.00200000",
    )
    listed = _exchange(environment, "orders", "--open", "--symbol", "BTC-USDT")
    assert order["order_id"] in listed.stdout
    cancelled = _exchange(environment, "--json", "cancel", order["order_id"])
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    balances = _exchange(environment, "balances")
    assert "USDT" in balances.stdout
    assert "available" in balances.stdout

    refused = _exchange(environment, "place", "BTC-USDT", "buy", "90", "--price", "46000")
    assert refused.returncode == 1
    assert "INSUFFICIENT_BALANCE" in refused.stderr
    too_precise = _exchange(environment, "place", "BTC-USDT", "buy", "0.000000001", "--price", "1")
    assert too_precise.returncode == 1
    assert "PRECISION_EXCEEDED" in too_precise.stderr


@pytest.mark.parametrize("example", ["trade.py", "balances.py"])
def test_readme_examples_run(environment: dict[str, str], example: str) -> None:
    answer = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    expected = "bought 0.01000000 BTC at 50000.000000 USDT" if example == "trade.py" else "USDT:"
    assert expected in answer.stdout


def test_demo_bots_trade_with_each_other(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client(ALICE) as maker_client, sdk_edge.client(BOB) as taker_client:
        batches = market_maker.run(
            maker_client, ["BTC-USDT", "ETH-USDT"], duration_seconds=0.3, rate=20, seed=1
        )
        assert batches >= 2
        # Quote once more and leave the quotes for the taker.
        with maker_client.stream_orders() as stream:
            for symbol in ("BTC-USDT", "ETH-USDT"):
                market = maker_client.get_market(symbol)
                stream.send(
                    market_maker.quote_batch(
                        market, market.reference_price, levels=2, spread_bps=5, step_bps=5, lots=50
                    )
                )
        orders, fills = taker.run(
            taker_client, ["BTC-USDT"], duration_seconds=5, rate=0, seed=2, orders_max=3
        )
        assert orders == 3
        assert fills >= 1
        assert maker_client.list_fills("BTC-USDT").items
        maker_client.cancel_all_orders()
        assert all(
            order.status is not OrderStatus.NEW
            for order in maker_client.list_orders(open_only=True).items
        )


def _without_markets_file(environment: dict[str, str]) -> dict[str, str]:
    """The user's environment with no saved markets: the CLI looks the specs up."""
    return {name: value for name, value in environment.items() if name != "EXCHANGE_MARKETS_FILE"}


def _cross(sdk_edge: SdkEdge, symbol: str, price: str, quantity: str = "0.01") -> None:
    with sdk_edge.client(ALICE) as alice, sdk_edge.client(BOB) as bob:
        bob.place_order(symbol, "sell", quantity, price=price)
        alice.place_order(symbol, "buy", quantity, price=price, time_in_force="ioc")


def test_cli_book_and_trades_print_the_real_market(
    sdk_edge: SdkEdge, environment: dict[str, str]
) -> None:
    looked_up = _without_markets_file(environment)
    _cross(sdk_edge, "ETH-USDT", "3003.5", "0.3")
    with sdk_edge.client(BOB) as bob:
        bob.place_order("ETH-USDT", "sell", "0.7", price="3010")

        def shown() -> str | None:
            answer = _exchange(looked_up, "book", "ETH-USDT", "--depth", "5")
            return answer.stdout if "3010" in answer.stdout else None

        book = until(shown, what="Bob's ask in `exchange book`")
        assert "ETH-USDT at seq" in book
        assert "ask    3010.000000 0.70000000" in book
        trades = _exchange(looked_up, "--json", "trades", "ETH-USDT", "--limit", "1")
        assert trades.returncode == 0, trades.stderr
        trade = json.loads(trades.stdout.splitlines()[0])
        assert (trade["price"], trade["quantity"], trade["taker_side"]) == (
            "3003.500000",
            "0.30000000",
            "buy",
        )
        bob.cancel_all_orders()


def test_cli_watch_prints_trades_and_own_fills(
    sdk_edge: SdkEdge, environment: dict[str, str]
) -> None:
    watch = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "exchange"),
            "--json",
            "watch",
            "trades:BTC-USDT",
            "fills",
            "balances",
            "--count",
            "4",
            "--seconds",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_without_markets_file(environment),
    )
    try:
        assert watch.stderr is not None
        assert watch.stderr.readline().startswith("watching trades:BTC-USDT fills balances")
        _cross(sdk_edge, "BTC-USDT", "50050")  # Alice (the CLI's key) buys
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    trades = [event["trade"] for event in events if "trade" in event]
    assert [(trade["price"], trade["quantity"]) for trade in trades] == [
        ("50050.000000", "0.01000000")
    ]
    fills = [event for event in events if event["channel"] == "fills"]
    assert [(fill["side"], fill["liquidity"], fill["price"]) for fill in fills] == [
        ("buy", "taker", "50050.000000")
    ]
    balances = {event["balance"]["asset"] for event in events if event["channel"] == "balances"}
    assert balances <= {"BTC", "USDT"}
    assert balances


def test_watch_trades_example_runs_against_the_real_feed(
    sdk_edge: SdkEdge, environment: dict[str, str]
) -> None:
    example = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "watch_trades.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 30
        while example.poll() is None and time.monotonic() < deadline:
            _cross(sdk_edge, "BTC-USDT", "50010")
            time.sleep(0.2)
        out, err = example.communicate(timeout=10)
    finally:
        example.kill()
    assert example.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 5
    assert all(line.startswith("trade 0.01000000 @ 50010.000000; best bid") for line in lines)


def test_demo_bots_take_the_reference_price_from_the_ticker(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client(ALICE) as client:
        eth = client.get_market("ETH-USDT")
        btc = client.get_market("BTC-USDT")
        assert reference_price(client, eth) == eth.reference_price  # no ticker stored
        sdk_edge.set_ticker(
            marketdata_types_pb2.Ticker(symbol="ETH-USDT", last=3_120 * 10**6, trade_count=1)
        )
        assert reference_price(client, eth) == Decimal(3120)
        quotes = market_maker.quote_batch(
            eth, reference_price(client, eth), levels=1, spread_bps=10, step_bps=10, lots=10
        )
        prices = [command.price for command in quotes if isinstance(command, PlaceOrder)]
        assert prices == [Decimal("3116.88"), Decimal("3123.13")]
        assert reference_price(client, btc) > 0
