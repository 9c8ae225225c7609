"""The event path's health, for every process that publishes to or consumes the event log
(the core's outbox, the ledger's settlement consumer and events publisher, the gateway's
market-data consumer, streaming).

- `EventPath`: one publisher or consumer; it records each success and failure (the last
  success, consecutive failures, the last error). It is *unhealthy* once it has been failing
  for longer than the bound (`EXCHANGE_EVENT_PATH_BOUND_SECONDS`, default 30 s) without a
  success in between. An idle path (nothing to publish) is not failing.
- `BrokerProbe`: a consumer of its own that asks the broker for the end offsets of the
  topics the process uses every `interval_seconds` (timeout `timeout_seconds`), so a
  consumer whose client only retries in silence (aiokafka's fetcher, Quix's) and an idle
  publisher see a broken broker too: a broker that is down, paused (SIGSTOP) or whose
  storage refuses answers.
- `HealthReporter`: every second, sets the process's `grpc.health.v1` status of the service
  `EVENT_PATH_SERVICE` to NOT_SERVING while any path is unhealthy and back to SERVING when
  all are healthy again, and logs each change with the reason (`event path unhealthy: ...`,
  `event path healthy again`). The local stack's `status` asks each component for it and
  shows the last such line of its log. The overall status ("") and the RPC services' stay
  SERVING: Envoy health-checks those, and a broken event log must not stop trading (an
  order is durable in the WAL once acknowledged; the outbox publishes it when the broker is
  back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2

EVENT_PATH_SERVICE: Final = "exchange.eventlog.EventPath"  # a grpc.health.v1 service name
BOUND_VARIABLE: Final = "EXCHANGE_EVENT_PATH_BOUND_SECONDS"
BOUND_SECONDS_DEFAULT: Final = 30.0
UNHEALTHY_PREFIX: Final = "event path unhealthy: "
HEALTHY_AGAIN: Final = "event path healthy again"
LOGGER: Final = logging.getLogger("exchange.event_path")


def bound_seconds_from_environment() -> float:
    return float(os.environ.get(BOUND_VARIABLE, str(BOUND_SECONDS_DEFAULT)))


class EventPath:
    """One publisher's or consumer's path to the event log."""

    def __init__(
        self,
        name: str,
        *,
        bound_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.bound_seconds = (
            bound_seconds_from_environment() if bound_seconds is None else bound_seconds
        )
        self._clock = clock
        self.last_success_at: float | None = None
        self.failing_since: float | None = None
        self.consecutive_failures = 0
        self.last_error = ""

    def succeeded(self) -> None:
        self.last_success_at = self._clock()
        self.failing_since = None
        self.consecutive_failures = 0

    def failed(self, error: BaseException | str) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()
        self.consecutive_failures += 1
        self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"

    def problem(self) -> str | None:
        """Why the path is unhealthy, or None while it is healthy."""
        if self.failing_since is None:
            return None
        now = self._clock()
        failing_for = now - self.failing_since
        if failing_for <= self.bound_seconds:
            return None
        success = (
            "never succeeded"
            if self.last_success_at is None
            else f"last success {now - self.last_success_at:.0f}s ago"
        )
        return (
            f"{self.name} failing for {failing_for:.0f}s (bound {self.bound_seconds:.0f}s, "
            f"{self.consecutive_failures} consecutive failures, {success}; last error: "
            f"{self.last_error})"
        )


class BackgroundTask:
    """A task on the running loop from `start()` until `stop()` (the health watchers here,
    the ledger's events publisher)."""

    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{type(self).__name__} started twice")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        raise NotImplementedError


class BrokerProbe(BackgroundTask):
    """Asks the broker for its metadata every `interval_seconds`: it must answer, and know
    every one of `topics` that exists (a metadata request costs the broker little; end
    offsets, which the first version asked for, make Tansu list every stored batch of each
    partition, and four services asking every 2 s slowed it down under load until the
    ledger fell behind)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        path: EventPath,
        *,
        interval_seconds: float = 2.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topics = tuple(topics)
        self.path = path
        self._interval_seconds = interval_seconds
        self._timeout_seconds = timeout_seconds

    async def _run(self) -> None:
        consumer: AIOKafkaConsumer | None = None
        try:
            while True:
                try:
                    if consumer is None:
                        consumer = AIOKafkaConsumer(
                            bootstrap_servers=self._bootstrap_servers,
                            enable_auto_commit=False,
                            client_id=f"exchange-health-{self.path.name}",
                            request_timeout_ms=int(self._timeout_seconds * 1000),
                        )
                        await asyncio.wait_for(consumer.start(), self._timeout_seconds)
                    await asyncio.wait_for(self._probe(consumer), self._timeout_seconds)
                    self.path.succeeded()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - any broker failure is the path's
                    self.path.failed(error if str(error) else type(error).__name__)
                    if consumer is not None:
                        await _close(consumer, self._timeout_seconds)
                    consumer = None
                await asyncio.sleep(self._interval_seconds)
        finally:
            if consumer is not None:
                await _close(consumer, self._timeout_seconds)

    async def _probe(self, consumer: AIOKafkaConsumer) -> None:
        cluster = await consumer._client.fetch_all_metadata()  # no public equivalent
        leaderless = [
            f"{topic}/{partition}"
            for topic in self._topics
            for partition in sorted(cluster.partitions_for_topic(topic) or ())
            if cluster.leader_for_partition(TopicPartition(topic, partition)) in (None, -1)
        ]
        if leaderless:
            message = f"partitions without a leader: {', '.join(leaderless)}"
            raise RuntimeError(message)


async def _close(consumer: AIOKafkaConsumer, timeout_seconds: float) -> None:
    with contextlib.suppress(Exception, TimeoutError):
        await asyncio.wait_for(consumer.stop(), timeout_seconds)


class SetServing(Protocol):
    def __call__(self, *, serving: bool) -> Awaitable[None]: ...


def health_setter(
    set_status: Callable[
        [str, health_pb2.HealthCheckResponse.ServingStatus.ValueType], Awaitable[None]
    ],
) -> SetServing:
    """`set_serving(serving)` over a HealthServicer's `set`, for EVENT_PATH_SERVICE."""

    async def set_serving(*, serving: bool) -> None:
        await set_status(
            EVENT_PATH_SERVICE,
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )

    return set_serving


class HealthReporter(BackgroundTask):
    """Keeps the process's health NOT_SERVING while any path is unhealthy."""

    def __init__(
        self,
        paths: Sequence[EventPath],
        set_serving: SetServing,
        *,
        interval_seconds: float = 1.0,
        logger: logging.Logger = LOGGER,
    ) -> None:
        self.paths = list(paths)
        self._set_serving = set_serving
        self._interval_seconds = interval_seconds
        self._logger = logger
        self.unhealthy_reason: str | None = None

    async def check(self) -> str | None:
        """Set the health from the paths now; returns the reason when unhealthy."""
        problems = [problem for path in self.paths if (problem := path.problem()) is not None]
        reason = "; ".join(problems) or None
        if reason is not None and self.unhealthy_reason is None:
            self._logger.error("%s%s", UNHEALTHY_PREFIX, reason)
            await self._set_serving(serving=False)
        elif reason is None and self.unhealthy_reason is not None:
            self._logger.warning(HEALTHY_AGAIN)
            await self._set_serving(serving=True)
        self.unhealthy_reason = reason
        return reason

    async def _run(self) -> None:
        """Report SERVING now, then watch the paths."""
        await self._set_serving(serving=True)
        while True:
            await self.check()
            await asyncio.sleep(self._interval_seconds)
