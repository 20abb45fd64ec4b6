#!/usr/bin/env bash
# Benchmark berth's CNI plugins against the reference plugins (see bench/cni.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
unset NODE_EXTRA_CA_CERTS
exec node dist/bench/cni "$@"
