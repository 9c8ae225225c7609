"""The CLI: argument parsing, settings from flags/environment/keys file, and its output
(tables, or JSON lines with decimal strings) over a scripted transport."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2
from exchange_sdk.cli import build_parser, main
from exchange_sdk.config import ConnectionSettings, resolve_settings
from exchange_sdk.testing import FakeTransport, fake_client, rejection

from tests.unit.sdk.markets import BTC_USDT


def test_parser() -> None:
    arguments = build_parser().parse_args(
        ["--json", "place", "BTC-USDT", "buy", "0.01", "--price", "50000", "--tif", "ioc"]
    )
    assert (arguments.command, arguments.side, str(arguments.quantity)) == ("place", "buy", "0.01")
    assert arguments.json
    assert arguments.tif == "ioc"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["place", "BTC-USDT", "hold", "1"])


def test_settings_flags_over_environment_over_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "demo-keys.json"
    keys.write_text(
        json.dumps({"demo-bob": {"key_id": "kb", "secret": "sb", "account_id": "demo-bob"}})
    )
    environment = {"EXCHANGE_KEYS_FILE": str(keys), "EXCHANGE_ENDPOINT": "10.0.0.1:80"}
    from_file = resolve_settings(key_name="demo-bob", environment=environment)
    assert from_file.endpoint == "10.0.0.1:80"
    assert from_file.credentials is not None
    assert from_file.credentials.key_id == "kb"
    assert from_file.websocket_url == "ws://10.0.0.1:80/ws"
    flags = resolve_settings(endpoint="e:1", api_key="k", api_secret="s", environment=environment)
    assert flags.endpoint == "e:1"
    assert flags.credentials is not None
    assert flags.credentials.key_id == "k"
    with pytest.raises(ValueError, match="no key"):
        resolve_settings(key_name="demo-carol", environment=environment)


def _fake() -> FakeTransport:
    fake = FakeTransport()
    fake.answer(
        "ListOrders",
        trading_pb2.ListOrdersResponse(
            orders=[
                trading_pb2.Order(
                    order_id="9",
                    client_order_id="c9",
                    symbol="BTC-USDT",
                    side=types_pb2.SIDE_BUY,
                    price=50_000_010_000,
                    quantity=1_000_000,
                    status=types_pb2.ORDER_STATUS_NEW,
                )
            ]
        ),
    )
    fake.answer(
        "ListAccountBalances",
        trading_pb2.ListAccountBalancesResponse(
            balances=[types_pb2.Balance(asset="BTC", available=150_000_000, held=1)]
        ),
    )
    return fake


def _run(arguments: list[str], fake: FakeTransport) -> tuple[int, str]:
    out = io.StringIO()

    def factory(_: ConnectionSettings):  # type: ignore[no-untyped-def]
        return fake_client(fake, markets=[BTC_USDT])

    code = main(
        ["--api-key", "k", "--api-secret", "s", *arguments], out=out, client_factory=factory
    )
    return code, out.getvalue()


def test_orders_and_balances_as_text_and_json() -> None:
    code, text = _run(["orders", "--open"], _fake())
    assert code == 0
    assert "BTC-USDT  buy  0.01000000 @ 50000.010000  new" in text
    code, text = _run(["--json", "balances"], _fake())
    assert json.loads(text) == {"asset": "BTC", "available": "1.50000000", "held": "0.00000001"}


def test_a_rejection_exits_1_with_its_reason() -> None:
    fake = _fake()
    fake.fail("PlaceOrder", rejection("INSUFFICIENT_BALANCE"))
    code, text = _run(["--json", "place", "BTC-USDT", "buy", "1", "--price", "50000"], fake)
    assert code == 1
    assert json.loads(text)["error"]["reason"] == "INSUFFICIENT_BALANCE"
