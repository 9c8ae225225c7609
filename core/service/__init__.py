"""The trading core's gRPC service: TradingService, FundingService and CoreAdminService on
grpc.aio around the sequencer (core/sequencer). See core/service/README.md.

Public API: `CoreService` / `ServiceConfig` (core/service/server.py), `CoreRuntime`,
`CommandGateway`, `ServiceError`, and the identity headers.
"""

from __future__ import annotations

from core.service.command_gateway import CommandGateway, ResultsListener
from core.service.errors import ServiceError
from core.service.identity import ACCOUNT_HEADER, OPERATOR_HEADER
from core.service.runtime import CoreRuntime
from core.service.server import AsyncComponent, CoreService, ServiceConfig

__all__ = [
    "ACCOUNT_HEADER",
    "OPERATOR_HEADER",
    "AsyncComponent",
    "CommandGateway",
    "CoreRuntime",
    "CoreService",
    "ResultsListener",
    "ServiceConfig",
    "ServiceError",
]
