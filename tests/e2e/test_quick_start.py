"""The SDK README's quick start works whenever the demo has been running: the local exchange
with its demo bots, once the bots have traded the price away from the market's seed
(reference) price, then the README's examples (sdk/examples) as a user runs them, as
subprocesses with the stored demo keys. The bots trade as accounts of their own, so the
example users (demo-alice, demo-bob) have neither orders nor fills of the bots."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from exchange_sdk import Client

from infra.local.demo_accounts import BOT_ACCOUNTS, EXAMPLE_ACCOUNTS
from tests.paths import REPO_ROOT
from tests.support.local_stack import StackCommand, local_stack, wait_until

EXAMPLES = REPO_ROOT / "sdk" / "examples"
SYMBOL = "BTC-USDT"
BOUGHT = re.compile(r"^bought (\d+\.\d+) BTC at (\d+\.\d+) USDT", re.MULTILINE)


@pytest.fixture(scope="module")
def stack() -> Iterator[StackCommand]:
    with local_stack(bots=True) as command:
        command.up()
        yield command


def _run_example(stack: StackCommand, example: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "EXCHANGE_ENDPOINT": stack.edge_address,
        "EXCHANGE_HTTP_URL": stack.edge_url,
        "EXCHANGE_KEYS_FILE": str(stack.keys_file),
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_the_readme_examples_pass_after_the_bots_moved_the_price(stack: StackCommand) -> None:
    keys = stack.keys()
    assert set(keys) >= {*EXAMPLE_ACCOUNTS, *BOT_ACCOUNTS}
    with Client(stack.edge_address) as public:
        seed_price = public.get_market(SYMBOL).reference_price

        def moved() -> bool:
            trades = public.list_trades(SYMBOL).items
            asks = public.get_order_book(SYMBOL, depth=1).asks
            return bool(trades) and trades[0].price != seed_price and bool(asks)

        wait_until("the bots traded the price away from the seed", moved, timeout_seconds=90)
        best_ask_before = public.get_order_book(SYMBOL, depth=1).asks[0].price
    assert best_ask_before != seed_price

    for account in EXAMPLE_ACCOUNTS:  # the bots never traded as the example users
        key = keys[account]
        with Client(stack.edge_address, api_key=key.key_id, api_secret=key.secret) as user:
            orders = user.list_orders().items  # `up`'s smoke order is demo-alice's
            assert all(order.client_order_id.startswith("smoke-") for order in orders), account
            assert not user.list_fills().items, account

    traded = _run_example(stack, "trade.py")
    assert traded.returncode == 0, traded.stdout + traded.stderr
    fills = [
        (Decimal(quantity), Decimal(price)) for quantity, price in BOUGHT.findall(traded.stdout)
    ]
    # All 0.01 BTC, from the offers at the best ask (the bots' and Bob's).
    assert sum(quantity for quantity, _price in fills) == Decimal("0.01"), traded.stdout

    balances = _run_example(stack, "balances.py")
    assert balances.returncode == 0, balances.stderr
    assert "USDT:" in balances.stdout
    assert "BTC:" in balances.stdout

    watched = _run_example(stack, "watch_trades.py")  # the bots' trades: 5 of them
    assert watched.returncode == 0, watched.stderr
    assert len(watched.stdout.splitlines()) == 5
    assert all(line.startswith("trade ") for line in watched.stdout.splitlines())
