#!/usr/bin/env bash
# Each component of the local exchange: stopped, or running and healthy / unhealthy (with
# the reason; a broken event path counts). Exits 1 when a service is stopped or unhealthy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec "$root/.venv/bin/python" -m infra.local.stack status "$@"
