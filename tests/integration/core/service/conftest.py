from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.core.service.service_harness import Harness, funded_harness


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Harness]:
    """A started service with BTC-USDT listed and alice and bob funded."""
    async for harness in funded_harness(tmp_path / "core"):
        yield harness
