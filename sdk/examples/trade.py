"""Place an order that trades: Bob offers 0.01 BTC at the best ask, Alice buys it IOC."""

from decimal import Decimal

from exchange_sdk import Client, OrderStatus
from exchange_sdk.config import ConnectionSettings, resolve_settings

alice_settings = resolve_settings(key_name="demo-alice")
bob_settings = resolve_settings(key_name="demo-bob")
catalog = alice_settings.catalog()  # markets file if EXCHANGE_MARKETS_FILE is set, else looked up
QUANTITY = Decimal("0.01")


def connect(settings: ConnectionSettings) -> Client:
    key = settings.credentials
    assert key is not None, "no API key: start the local exchange or set EXCHANGE_API_KEY"
    return Client(settings.endpoint, api_key=key.key_id, api_secret=key.secret, catalog=catalog)


with connect(alice_settings) as alice, connect(bob_settings) as bob:
    # Price from the live book: Bob joins the best ask (the market's reference price when
    # nobody offers), so Alice's IOC buy at that price fills against the offers there.
    market = alice.get_market("BTC-USDT")
    asks = alice.get_order_book("BTC-USDT", depth=1).asks
    price = asks[0].price if asks else market.reference_price
    offer = bob.place_order("BTC-USDT", "sell", QUANTITY, price=price)
    bought = alice.place_order("BTC-USDT", "buy", QUANTITY, price=price, time_in_force="ioc")
    assert bought.order.status is OrderStatus.FILLED, bought.order
    for fill in bought.fills:
        print(f"bought {fill.quantity} BTC at {fill.price} USDT, fee {fill.fee} {fill.fee_asset}")
    if bob.get_order(offer.order.order_id).status.is_open:
        bob.cancel_order(offer.order.order_id)  # others at that price were ahead of Bob
