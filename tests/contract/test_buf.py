"""buf's checks work on our module: lint is clean, and both lint and the breaking
check catch what they must (proved on temporary copies of the module)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT


def _copy_module(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("proto", "third_party"):
        shutil.copytree(REPO_ROOT / name, target / name)
    shutil.copy(REPO_ROOT / "buf.yaml", target / "buf.yaml")
    return target


def _buf(buf: str, *arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([buf, *arguments], cwd=cwd, capture_output=True, text=True, check=False)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_lint_is_clean(buf_executable: str) -> None:
    result = _buf(buf_executable, "lint", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("SIDE_UNSPECIFIED = 0;", "SIDE_NONE = 0;", "ENUM_ZERO_VALUE_SUFFIX"),
        ("service TradingService {", "service Trading {", "SERVICE_SUFFIX"),
    ],
)
def test_lint_catches_violations(
    buf_executable: str, tmp_path: Path, old: str, new: str, rule: str
) -> None:
    module = _copy_module(tmp_path / "module")
    source = "types" if "SIDE" in old else "trading"
    folder = "common" if source == "types" else "trading"
    _edit(module / "proto" / "exchange" / folder / "v1" / f"{source}.proto", old, new)
    result = _buf(buf_executable, "lint", "--error-format", "json", cwd=module)
    assert result.returncode != 0
    assert rule in result.stdout


def _breaking_after_edit(
    buf: str, tmp_path: Path, proto: tuple[str, ...], old: str, new: str
) -> subprocess.CompletedProcess[str]:
    """Runs buf breaking on a copy of the module with one edit, against an unedited copy."""
    base = _copy_module(tmp_path / "base")
    changed = _copy_module(tmp_path / "changed")
    _edit(changed.joinpath("proto", "exchange", *proto), old, new)
    return _buf(
        buf,
        "breaking",
        str(changed),
        "--against",
        str(base),
        "--error-format",
        "json",
        cwd=tmp_path,
    )


def test_breaking_check_passes_on_an_additive_change(buf_executable: str, tmp_path: Path) -> None:
    result = _breaking_after_edit(
        buf_executable,
        tmp_path,
        ("trading", "v1", "trading.proto"),
        "  uint64 engine_seq = 22;\n}",
        "  uint64 engine_seq = 22;\n  string note = 23;\n}",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_breaking_check_catches_a_deleted_field(buf_executable: str, tmp_path: Path) -> None:
    result = _breaking_after_edit(
        buf_executable,
        tmp_path,
        ("trading", "v1", "trading.proto"),
        "  int64 quote_quantity = 10;\n  bool post_only = 11;",
        "  bool post_only = 11;",
    )
    assert result.returncode != 0
    assert "FIELD_NO_DELETE" in result.stdout


def test_breaking_check_catches_a_renumbered_enum_value(
    buf_executable: str, tmp_path: Path
) -> None:
    result = _breaking_after_edit(
        buf_executable,
        tmp_path,
        ("common", "v1", "types.proto"),
        "SIDE_SELL = 2;",
        "SIDE_SELL = 3;",
    )
    assert result.returncode != 0
    assert "ENUM_VALUE_NO_DELETE" in result.stdout or "ENUM_VALUE_SAME_NAME" in result.stdout
