"""The `exchange` CLI, the README's examples (sdk/examples) and the demo bots, as a user
runs them, against the real edge: keys from a var/demo-keys.json-style file, market rules
from a saved `GET /v1/markets`-style file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from exchange.marketdata.v1 import marketdata_pb2
from exchange_sdk import OrderStatus
from exchange_sdk.demo import market_maker, taker
from google.protobuf import json_format

from infra.local.reference_data import MARKETS
from tests.integration.edge.harness import ALICE, BOB
from tests.integration.sdk.conftest import SdkEdge
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
