#!/usr/bin/env bash
# Installs what is missing and starts the exchange on loopback.
#
# Components start here as they land (issues #3-#7: core, ledger, gateway, Envoy,
# streaming, PostgreSQL, Redis, the Kafka-API broker). Until the first service
# lands, this installs the toolchain, checks the contracts and prints where things are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash infra/bootstrap.sh
export PATH="$root/.venv/bin:$PATH"

buf lint
echo "contracts: $(find proto -name '*.proto' | wc -l) proto files, lint clean"
echo "descriptor set for Envoy: gen/descriptors/exchange.binpb"
echo "services running: none yet — the trading core is the next to land (issue #3)"
