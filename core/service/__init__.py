"""The trading core's gRPC service: TradingService, FundingService and CoreAdminService on
grpc.aio around the sequencer (core/sequencer). See core/service/README.md.

Public API: `CoreService` / `ServiceConfig` (core/service/server.py), `CoreRuntime`,
`CommandIntake` and `ServiceError`. The identity headers are in common/identity_headers.py.
"""

from __future__ import annotations

from core.service.command_intake import CommandIntake, ResultsListener
from core.service.errors import ServiceError
from core.service.runtime import CoreRuntime
from core.service.server import CoreService, ServiceConfig

__all__ = [
    "CommandIntake",
    "CoreRuntime",
    "CoreService",
    "ResultsListener",
    "ServiceConfig",
    "ServiceError",
]
