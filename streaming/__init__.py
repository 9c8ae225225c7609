"""Streaming market data: candles and tickers from the core's trades (Quix Streams),
latest state in Redis, history in ClickHouse, MarketDataService history reads (gRPC)."""
