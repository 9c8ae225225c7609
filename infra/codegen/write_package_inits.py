"""Writes an empty ``__init__.py`` into every folder of the generated package tree.

protoc writes modules only; regular packages (rather than implicit namespace
packages) keep ``exchange`` from merging with any other ``exchange`` folder on
the path and let type checkers and wheel builders see the tree as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_package_inits(package_root: Path) -> None:
    for folder in [package_root, *sorted(p for p in package_root.rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__":
            continue
        init_path = folder / "__init__.py"
        if not init_path.exists():
            init_path.write_text("", encoding="utf-8")


if __name__ == "__main__":
    write_package_inits(Path(sys.argv[1]))
