"""The local exchange with its demo bots, as someone exploring it gets it from `up`: the
market maker's quotes on both books, trades between the bots, visible through the SDK; a
second `up` leaves the bots alone; `down` stops them first, the market maker cancelling its
quotes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from exchange_sdk import Client

from infra.local.components import DEMO_SYMBOLS, book_quoted
from infra.local.supervisor import process_alive
from tests.support.local_stack import StackCommand, local_stack, wait_until

BOTS = ("market-maker", "taker")


@pytest.fixture(scope="module")
def stack() -> Iterator[StackCommand]:
    with local_stack(bots=True) as command:
        yield command


def test_up_starts_the_bots_and_the_market_lives(stack: StackCommand) -> None:
    started = stack.up()
    assert "market-maker: started" in started.stdout
    assert "taker: started" in started.stdout
    assert "Demo bots running: market-maker, taker" in started.stdout
    # `up` waited for both books to be quoted; the taker may empty a side for a moment
    # before the market maker quotes it again, so "quoted" is asked again, with time.
    wait_until(
        "both books quoted",
        lambda: all(book_quoted(stack.edge_url, symbol) for symbol in DEMO_SYMBOLS),
        timeout_seconds=15,
    )
    with Client(stack.edge_address) as public:
        wait_until(
            "the bots trade",
            lambda: any(public.list_trades(symbol).items for symbol in DEMO_SYMBOLS),
            timeout_seconds=30,
        )
    pids = {bot: stack.pid(bot) for bot in BOTS}

    again = stack.up()
    assert "market-maker: already running" in again.stdout
    assert {bot: stack.pid(bot) for bot in BOTS} == pids

    stopped = stack("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    order = [line.split(":")[0] for line in stopped.stdout.splitlines() if "stopped" in line]
    assert order[:2] == ["taker", "market-maker"]  # the bots before the services
    assert not [pid for pid in pids.values() if process_alive(pid)]
    maker_log = (stack.var / "log" / "market-maker.log").read_text()
    assert "market maker: stopped, quotes cancelled" in maker_log
