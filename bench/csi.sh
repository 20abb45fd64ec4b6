#!/usr/bin/env bash
# Benchmark berth-csi volume cycles (see bench/csi.ts). To compare with a peer driver running
# on this machine (e.g. the hostpath demo driver, built and started by hand), point
# BENCH_CSI_PEER at its socket. BENCH_CSI_CYCLES sets the number of cycles (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
exec node dist/bench/csi "$@"
