"""The edge's Redis stays writable when its memory is full (infra/local/redis.py): the
idempotency bindings (24 h each) of a day's traffic exceed any fixed memory, so the oldest
are evicted, and the keys without an expiry (API keys) never are. With `noeviction` the
server refused every write once full, and every signed POST with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from infra.local.redis import RedisServer

MAX_MEMORY_BYTES = 4 * 1024 * 1024
BINDINGS = 60_000  # ~10 MiB of idempotency bindings
DAY_SECONDS = 86_400


@pytest.fixture
def small_redis() -> Iterator[redis.Redis]:
    with RedisServer(max_memory_bytes=MAX_MEMORY_BYTES) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        yield client
        client.close()


def test_bindings_beyond_memory_evict_the_oldest_and_never_an_api_key(
    small_redis: redis.Redis,
) -> None:
    small_redis.hset("apikey:key-1", mapping={"account_id": "alice", "secret_hash": "x" * 64})
    fingerprint = "f" * 64
    batch = 1_000
    for start in range(0, BINDINGS, batch):
        pipeline = small_redis.pipeline(transaction=False)
        for index in range(start, start + batch):
            pipeline.set(f"idempotency:alice:order-{index:08d}", fingerprint, ex=DAY_SECONDS)
        pipeline.execute()  # raises OutOfMemoryError under noeviction
    memory = small_redis.info("memory")
    assert int(memory["used_memory"]) <= MAX_MEMORY_BYTES * 1.1
    assert small_redis.info("stats")["evicted_keys"] > 0
    assert small_redis.hgetall("apikey:key-1") == {"account_id": "alice", "secret_hash": "x" * 64}
    assert small_redis.get(f"idempotency:alice:order-{BINDINGS - 1:08d}") == fingerprint
