"""Fixtures for the durability-layer integration tests (real files under tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.wal import WalOptions


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "wal"
    directory.mkdir()
    return directory


@pytest.fixture
def small_segments() -> WalOptions:
    """Segments of ~1 KiB so a few dozen records roll several times."""
    return WalOptions(
        segment_bytes_max=1024,
        record_bytes_max=256,
        group_bytes_max=64 * 1024,
        pending_bytes_max=1024 * 1024,
    )
