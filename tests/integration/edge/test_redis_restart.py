"""The gateway's Redis clients (gateway/redis_client.py) outlive a Redis restart: the first
command after it succeeds on a new connection, where a plain client fails on the pooled
connection Redis closed (what tests/chaos found: the first API-key call after a Redis
restart answered UNKNOWN)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.redis_client import redis_client
from infra.local.redis import RedisServer


def test_a_command_after_a_redis_restart_succeeds(redis_server: RedisServer) -> None:
    async def run() -> tuple[bytes | str | None, type[BaseException] | None]:
        resilient = redis_client(redis_server.url, decode_responses=True)
        plain = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await resilient.ping()
            await plain.ping()
            redis_server.stop()
            redis_server.start()
            failed: type[BaseException] | None = None
            try:
                await plain.get("k")
            except RedisConnectionError as error:
                failed = type(error)
            await resilient.set("k", "after")  # the first command after the restart
            return await resilient.get("k"), failed
        finally:
            await resilient.aclose()
            await plain.aclose()

    value, failed = asyncio.run(run())
    assert failed is RedisConnectionError  # the stale pooled connection, as before the fix
    assert value == "after"
