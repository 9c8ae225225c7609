"""The import contracts of pyproject.toml hold on the tree, and each of them can fail.

A contract that a broken boundary does not break guards nothing: each case below copies the
project's packages into a temporary directory, adds one import that crosses a boundary,
and runs `lint-imports` there with the project's own configuration. It must name the
contract that the import breaks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

import pytest

from tests.paths import REPO_ROOT

LINT_IMPORTS: Final = Path(sys.executable).with_name("lint-imports")
PACKAGES: Final = ("common", "core", "ledger", "gateway", "streaming", "sdk/src/exchange_sdk")

# (file, the import appended to it, the id of the contract it breaks)
BREAKS: Final = [
    ("core/engine/engine.py", "from core.wal.log import WalWriter", "pure-domain"),
    ("core/engine/book.py", "import asyncio", "pure-domain"),
    (
        "streaming/aggregation/market.py",
        "from streaming.history import HistoryStore",
        "pure-domain",
    ),
    ("core/wal/log.py", "from core.service.errors import ServiceError", "core-layers"),
    ("core/sequencer/__init__.py", "from core.outbox import OutboxJournal", "core-layers"),
    ("ledger/errors.py", "import grpc", "ledger-pure-rules"),
    ("ledger/posting_rules.py", "from ledger.db import connection", "ledger-pure-rules"),
    (
        "ledger/batch_rules.py",
        "from ledger.db.positions import load_positions",
        "ledger-pure-rules",
    ),
    (
        "ledger/service.py",
        "from core.outbox.publisher import OutboxPublisher",
        "services-independent",
    ),
    (
        "gateway/server.py",
        "from streaming.errors import StreamingServiceError",
        "services-independent",
    ),
    ("common/topics.py", "from core.contracts import errors", "common-below-services"),
    ("sdk/src/exchange_sdk/client.py", "from common import identity_headers", "sdk-standalone"),
]


def _lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, before the editable install of this checkout.
    environment = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'sdk' / 'src'}"}
    selected = [argument for contract in contracts for argument in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache", *selected],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


def _contract_ids() -> set[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return {contract["id"] for contract in config["tool"]["importlinter"]["contracts"]}


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_contract_has_a_break_below() -> None:
    assert {contract for _, _, contract in BREAKS} == _contract_ids()


@pytest.mark.parametrize(("path", "line", "contract"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_crossing_import_breaks_its_contract(
    tree: Path, path: str, line: str, contract: str
) -> None:
    target = tree / path
    original = target.read_text()
    target.write_text(f"{original}\n{line}  # noqa\n")
    try:
        result = _lint_imports(tree, contract)
    finally:
        target.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout, result.stdout
