"""core/engine must import nothing that does I/O, reads a clock or is random (STYLE.md #1)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[4] / "core" / "engine"
BANNED_ROOTS = frozenset(
    {
        "time",
        "datetime",
        "random",
        "secrets",
        "uuid",
        "os",
        "io",
        "socket",
        "select",
        "asyncio",
        "threading",
        "multiprocessing",
        "concurrent",
        "subprocess",
        "logging",
        "pathlib",
        "shutil",
        "tempfile",
        "sqlite3",
        "grpc",
        "sqlalchemy",
        "psycopg",
        "exchange",
        "google",
    }
)


def banned_imports(source: str) -> list[str]:
    """Every banned module a piece of source imports (absolute or dotted submodule)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names = [
                arg.value
                for arg in node.args[:1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
        found.extend(name for name in names if name.split(".")[0] in BANNED_ROOTS)
    return found


def engine_modules() -> list[Path]:
    return sorted(ENGINE_DIR.rglob("*.py"))


def test_engine_has_modules() -> None:
    assert len(engine_modules()) >= 10


@pytest.mark.parametrize("module", engine_modules(), ids=lambda path: path.name)
def test_engine_module_imports_nothing_banned(module: Path) -> None:
    assert banned_imports(module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os.path",
        "from datetime import datetime",
        "import random as r",
        "from uuid import uuid4",
        "import asyncio, json",
        "from exchange.trading.v1 import orders_pb2",
        "def f():\n    import logging\n",
        "__import__('socket')",
    ],
)
def test_checker_catches_banned_import(source: str) -> None:
    assert banned_imports(source) != []


@pytest.mark.parametrize(
    "source", ["import json", "from collections import deque", "import hashlib, heapq"]
)
def test_checker_allows_pure_modules(source: str) -> None:
    assert banned_imports(source) == []


def test_ruff_config_bans_the_same_modules() -> None:
    config = tomllib.loads((ENGINE_DIR / "ruff.toml").read_text(encoding="utf-8"))
    assert config["extend"] == "../../pyproject.toml"
    banned = set(config["lint"]["flake8-tidy-imports"]["banned-api"])
    assert {name.split(".")[0] for name in banned} == BANNED_ROOTS
