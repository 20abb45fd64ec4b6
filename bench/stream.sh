#!/usr/bin/env bash
# Benchmark berth-cri's streaming server (exec, port-forward) against containerd's CRI plugin (see bench/stream.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
unset NODE_EXTRA_CA_CERTS
exec node dist/bench/stream "$@"
