"""One edge per test module: Redis, the gateway process, the stand-in core, Envoy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from infra.local.redis import RedisServer
from tests.integration.edge.harness import Edge, GatewayProcess, edge_parameters, start_envoy
from tests.integration.edge.standin_core import StandInCore, start_standin_core


@pytest.fixture(scope="module")
def standin_core() -> Iterator[tuple[StandInCore, int]]:
    core, server, port = start_standin_core()
    try:
        yield core, port
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def edge(
    standin_core: tuple[StandInCore, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    directory: Path = tmp_path_factory.mktemp("edge")
    with (
        RedisServer() as redis,
        (directory / "gateway.log").open("wb") as gateway_log,
        (directory / "envoy.log").open("wb") as envoy_log,
    ):
        gateway = GatewayProcess(redis_url=redis.url, log=gateway_log)
        gateway.start()
        parameters = edge_parameters(
            core_port=standin_core[1],
            gateway=gateway,
            directory=directory,
            access_log_path=str(directory / "access.log"),
        )
        envoy = start_envoy(parameters, directory, envoy_log)
        try:
            yield Edge(envoy=envoy, gateway=gateway, redis=redis)
        finally:
            envoy.stop()
            gateway.stop()


@pytest.fixture
def grpc_channel(edge: Edge) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(edge.grpc_target) as channel:
        yield channel
