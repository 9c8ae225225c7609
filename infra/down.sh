#!/usr/bin/env bash
# Stops every component the local exchange started (infra/up.sh), in reverse order; data
# under var/ is kept for the next infra/up.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec "$root/.venv/bin/python" -m infra.local.stack down "$@"
