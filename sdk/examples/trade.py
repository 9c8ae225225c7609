"""Place an order that trades: Bob offers 0.01 BTC, Alice buys it; both see the fill."""

from decimal import Decimal

from exchange_sdk import Client, OrderStatus
from exchange_sdk.config import ConnectionSettings, resolve_settings

alice_settings = resolve_settings(key_name="demo-alice")
bob_settings = resolve_settings(key_name="demo-bob")
catalog = alice_settings.catalog()  # markets file if EXCHANGE_MARKETS_FILE is set, else looked up


def connect(settings: ConnectionSettings) -> Client:
    key = settings.credentials
    assert key is not None, "no API key: start the local exchange or set EXCHANGE_API_KEY"
    return Client(settings.endpoint, api_key=key.key_id, api_secret=key.secret, catalog=catalog)


with connect(alice_settings) as alice, connect(bob_settings) as bob:
    offer = bob.place_order("BTC-USDT", "sell", Decimal("0.01"), price=Decimal("50000"))
    bought = alice.place_order(
        "BTC-USDT", "buy", Decimal("0.01"), price=Decimal("50000"), time_in_force="ioc"
    )
    assert bought.order.status is OrderStatus.FILLED, bought.order
    for fill in bought.fills:
        print(f"bought {fill.quantity} BTC at {fill.price} USDT, fee {fill.fee} {fill.fee_asset}")
