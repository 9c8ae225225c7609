#!/usr/bin/env bash
# Installs what is missing and starts the exchange on loopback (detached processes; data,
# logs and pids under var/). Safe to run again: what runs is left alone. Stop it with
# infra/down.sh. Components and ports: infra/local/components.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash infra/bootstrap.sh
exec "$root/.venv/bin/python" -m infra.local.stack up "$@"
