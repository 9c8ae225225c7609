"""Conversions between the engine's values and the protobuf contracts (`gen/exchange`).

The engine (core/engine) never imports protobuf; the service, the outbox and anything else
that speaks the contracts convert here. One module per concern:

- `enums.py`: every engine enum <-> its contract enum, by name with the proto prefix;
- `errors.py`: error reasons and their contract status codes;
- `validation.py`: request checks done before anything is logged;
- `orders.py`, `funding.py`, `markets.py`: requests -> engine commands, results -> responses;
- `events.py`: engine events -> `EventEnvelope` (ids, causation, correlation, epoch);
- `event_wire.py`: the same envelopes as bytes, written by hand (the outbox's fast path).
"""
