"""`pip install ./sdk` alone, in a fresh virtualenv with nothing else of the repo,
gives the SDK and the generated contracts it ships."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

_PROBE = """
import pathlib, exchange, exchange_sdk
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from exchange.events.v1 import envelope_pb2
from exchange_sdk.money import to_minor_units
assert to_minor_units("1.5", scale=8) == 150000000
assert trading_pb2_grpc.TradingServiceStub
assert "site-packages" in pathlib.Path(exchange.__file__).parts
assert (pathlib.Path(exchange_sdk.__file__).parent / "py.typed").exists()
print("ok")
"""


@pytest.mark.slow
def test_sdk_installs_alone_and_imports_the_contracts(tmp_path: Path) -> None:
    environment_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment_dir)
    python = environment_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(REPO_ROOT / "sdk")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # -I: isolated, so neither the repo nor this test run's path can leak in.
    probe = subprocess.run(
        [str(python), "-I", "-c", _PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.strip() == "ok"
    assert sys.prefix != str(environment_dir)
