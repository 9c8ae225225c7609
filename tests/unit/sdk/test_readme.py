"""The README's quick-start blocks are the example files the integration tests run."""

from __future__ import annotations

import re

import pytest

from tests.paths import REPO_ROOT

README = (REPO_ROOT / "sdk" / "README.md").read_text()
EXAMPLES = REPO_ROOT / "sdk" / "examples"


@pytest.mark.parametrize("example", ["trade.py", "balances.py", "watch_trades.py"])
def test_the_readme_shows_each_example_verbatim(example: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert (EXAMPLES / example).read_text() in blocks
