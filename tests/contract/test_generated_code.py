"""Generated code is committed and reproducible: regenerating from proto/ on a
copy of the codegen inputs gives exactly the committed gen/ and docs."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO_ROOT


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_regeneration_matches_the_committed_code(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for name in ("proto", "third_party"):
        shutil.copytree(REPO_ROOT / name, workspace / name)
    shutil.copytree(REPO_ROOT / "infra" / "codegen", workspace / "infra" / "codegen")
    for name in ("buf.yaml", "buf.gen.yaml"):
        shutil.copy(REPO_ROOT / name, workspace / name)
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        ["bash", "infra/codegen/generate.sh"],
        cwd=workspace,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    regenerated, committed = _tree(workspace / "gen"), _tree(REPO_ROOT / "gen")
    assert sorted(regenerated) == sorted(committed), "files added or missing in gen/"
    changed = [name for name in committed if regenerated[name] != committed[name]]
    assert changed == [], "regenerate with infra/codegen/generate.sh and commit gen/"
    assert filecmp.cmp(
        workspace / "docs" / "api" / "errors.md",
        REPO_ROOT / "docs" / "api" / "errors.md",
        shallow=False,
    )
