"""`pip install ./sdk` alone works: the wheel holds exchange_sdk, py.typed and the
generated contracts, and imports in an interpreter that cannot see the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO_ROOT


def test_the_sdk_installs_and_imports_without_the_repository(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(REPO_ROOT / "sdk"),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "exchange_sdk" / "py.typed").is_file()
    assert (target / "exchange" / "trading" / "v1" / "trading_pb2.py").is_file()
    script = (
        "import exchange_sdk, exchange.trading.v1.trading_pb2 as t;"
        "from exchange_sdk import cli, websocket, testing;"
        f"assert exchange_sdk.__file__.startswith({str(target)!r}), exchange_sdk.__file__;"
        "print(exchange_sdk.Client.__name__, t.PlaceOrderRequest.DESCRIPTOR.full_name)"
    )
    # -S: no site (so no editable installs of the repository); the dependencies come from
    # the venv's site-packages, the SDK only from the target.
    site_packages = next(Path(sys.prefix).glob("lib/python*/site-packages"))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(site_packages)])}
    answer = subprocess.run(
        [sys.executable, "-S", "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    assert answer.stdout.split() == ["Client", "exchange.trading.v1.PlaceOrderRequest"]
