from __future__ import annotations

import pytest

from core.engine.testing import BTC, USDT, EngineDriver

ACCOUNTS = ("alice", "bob", "carol")


@pytest.fixture
def driver() -> EngineDriver:
    """BTC-USDT market; alice, bob and carol each hold 1,000,000 USDT and 100 BTC."""
    engine_driver = EngineDriver()
    engine_driver.bootstrap_btc_usdt()
    for account_id in ACCOUNTS:
        engine_driver.fund(account_id, "USDT", 1_000_000 * USDT)
        engine_driver.fund(account_id, "BTC", 100 * BTC)
    return engine_driver
