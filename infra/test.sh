#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): installs what is
# missing, then contract checks (buf lint, buf breaking against the previous
# commit), lint, strict types, the import contracts, and pytest (which also regenerates gen/ into a
# temporary copy and fails on any difference from what is committed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash infra/bootstrap.sh
export PATH="$root/.venv/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "buf lint"
buf lint

step "buf breaking"
# Against the previous commit of main (or BUF_BREAKING_AGAINST, e.g. origin/main).
against="${BUF_BREAKING_AGAINST:-HEAD~1}"
if git rev-parse -q --verify "$against^{commit}" >/dev/null \
  && git ls-tree -r --name-only "$against" -- proto | grep -q '\.proto$'; then
  buf breaking --against ".git#ref=$against"
  echo "no breaking change against $against"
else
  echo "skipped: $against has no contracts to compare with"
fi

step "ruff"
ruff check .
ruff format --check .

step "mypy --strict"
mypy

step "lint-imports"
# The import contracts of pyproject.toml: layers, pure domain, independent services.
lint-imports

step "pytest"
pytest "$@"
