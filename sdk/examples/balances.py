"""Read your balances: available, and held by open orders, in whole units."""

from exchange_sdk import Client
from exchange_sdk.config import resolve_settings

settings = resolve_settings(key_name="demo-alice")
key = settings.credentials
assert key is not None, "no API key: start the local exchange or set EXCHANGE_API_KEY"
with Client(
    settings.endpoint, api_key=key.key_id, api_secret=key.secret, catalog=settings.catalog()
) as client:
    for balance in client.get_balances().balances:
        print(f"{balance.asset}: {balance.available} available, {balance.held} held")
