#!/usr/bin/env bash
# Benchmark berth-cri against containerd's own CRI plugin (see bench/cri.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
unset NODE_EXTRA_CA_CERTS
exec node dist/bench/cri "$@"
