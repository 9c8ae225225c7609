"""A second core on an address already served fails to start (no silent SO_REUSEPORT
sharing, which would split clients between two shards' processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.service import CoreService, ServiceConfig


def _config(data_dir: Path, listen: str) -> ServiceConfig:
    return ServiceConfig(
        data_dir=data_dir, listen=listen, snapshot_on_shutdown=False, tune_garbage_collector=False
    )


async def test_a_second_service_cannot_take_a_served_port(tmp_path: Path) -> None:
    first = CoreService(_config(tmp_path / "first", "127.0.0.1:0"))
    port = await first.start()
    try:
        second = CoreService(_config(tmp_path / "second", f"127.0.0.1:{port}"))
        with pytest.raises(OSError, match="cannot listen"):
            await second.start()
        await second.stop()
    finally:
        await first.stop()
