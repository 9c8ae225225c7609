"""The projection's snapshot source: the core's `CoreAdminService.GetProjectionSnapshot`
(docs/adr/0017), called directly at `EDGE_CORE_ADDRESS` (not through Envoy) as the internal
operator `gateway:market-data`."""

from __future__ import annotations

from typing import Final

import grpc
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc

from common.identity_headers import operator_metadata
from gateway.market_data.projection import ProjectionSnapshot

OPERATOR_ID: Final = "gateway:market-data"
DEADLINE_SECONDS: Final = 30.0
# Every resting order and balance of the shard in one message.
MESSAGE_BYTES_MAX: Final = 512 * 1024 * 1024


class CoreSnapshots:
    """`await snapshots()` asks the core for a snapshot; `close()` at the end."""

    def __init__(self, address: str, *, deadline_seconds: float = DEADLINE_SECONDS) -> None:
        self._address = address
        self._deadline_seconds = deadline_seconds
        self._channel: grpc.aio.Channel | None = None

    async def __call__(self) -> ProjectionSnapshot:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self._address, options=[("grpc.max_receive_message_length", MESSAGE_BYTES_MAX)]
            )
        stub = core_admin_pb2_grpc.CoreAdminServiceStub(self._channel)
        snapshot: ProjectionSnapshot = await stub.GetProjectionSnapshot(
            core_admin_pb2.GetProjectionSnapshotRequest(),
            metadata=operator_metadata(OPERATOR_ID),
            timeout=self._deadline_seconds,
        )
        return snapshot

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
