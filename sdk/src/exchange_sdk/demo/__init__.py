"""Demo bots built on the SDK, for the local exchange: ``python -m
exchange_sdk.demo.market_maker`` quotes both sides with StreamOrders; ``python -m
exchange_sdk.demo.taker`` sends random marketable orders. Both read the endpoint and key
like the CLI (``exchange_sdk.config``: flags, ``EXCHANGE_*``, ``var/demo-keys.json``)."""
