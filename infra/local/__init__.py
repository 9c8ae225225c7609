"""Launchers for the real local components (Kafka-API broker, later PostgreSQL, Redis...).

Used by `infra/up.sh` (the local exchange) and by the test suite's fixtures alike, so the
tests run against exactly what a newcomer runs. Each launcher starts a real server process
on loopback, waits until it answers, and stops it cleanly.
"""
