#!/usr/bin/env bash
# Regenerates everything in gen/ from proto/: the Python messages, typed stubs and
# gRPC stubs (buf generate), the package __init__.py files, and the descriptor set
# Envoy's grpc_json_transcoder loads (buf build). Deterministic: running it twice
# gives the same bytes, and CI fails if it changes anything that is committed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

buf generate
# mypy-protobuf writes a stub for every file; keep only those of files with services.
find gen/exchange -name '*_pb2_grpc.pyi' | while read -r stub; do
  [ -f "${stub%.pyi}.py" ] || rm -f "$stub"
done
python infra/codegen/write_package_inits.py gen/exchange
mkdir -p gen/descriptors
buf build --as-file-descriptor-set --exclude-source-info -o gen/descriptors/exchange.binpb
python infra/codegen/write_error_docs.py proto/exchange/common/v1/errors.proto docs/api/errors.md
python infra/codegen/write_openapi.py gen/descriptors/exchange.binpb gen/openapi/exchange.openapi.json
