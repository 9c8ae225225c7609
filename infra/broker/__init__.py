"""A small, durable, single-node Kafka-protocol broker for the local stack and the tests.

Speaks the subset of the Kafka protocol the exchange's clients use (aiokafka, librdkafka
through quixstreams): see `infra.broker.protocol.SUPPORTED`. Production runs Kafka or
Redpanda; this replaces Tansu locally (docs/adr/0014-local-event-log-broker.md).
"""
