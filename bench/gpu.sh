#!/usr/bin/env bash
# Benchmark berth-gpu's Allocate latency and health propagation on the fake backend (bench/gpu.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
exec node dist/bench/gpu "$@"
