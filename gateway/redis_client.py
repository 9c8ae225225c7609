"""The gateway's Redis clients: one place that says how they survive a Redis restart.

A pooled connection that Redis closed (a restart, an idle timeout) fails the next command
sent on it with "Connection closed by server"; redis-py retries nothing by default. Every
client here pings a connection idle for more than `HEALTH_CHECK_SECONDS` before using it and
retries a command that failed on a connection or timeout error up to `RETRIES` times with
a short back-off on a new connection (found by tests/chaos: the first API-key call after a
Redis restart answered UNKNOWN). The commands the gateway sends are safe to repeat: key
creation is idempotent by request_id, a replay mark set twice by the same request was never
answered the first time, and a rate-limit count can only err on the strict side.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RETRIES: Final = 3
BACKOFF_BASE_SECONDS: Final = 0.05
BACKOFF_CAP_SECONDS: Final = 0.5
HEALTH_CHECK_SECONDS: Final = 5


def redis_client(url: str, *, decode_responses: bool) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=decode_responses,
        retry=Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS), RETRIES
        ),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=HEALTH_CHECK_SECONDS,
    )
