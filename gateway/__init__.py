"""Gateway: what the Envoy edge needs beside Envoy (auth, market data, WebSocket fan-out)."""
