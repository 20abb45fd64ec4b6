#!/usr/bin/env bash
# What berth costs a node in memory: the five components as separate daemons against the same
# five in one berthd, side by side in one run (see bench/memory.ts). BENCH_IDLE_S, BENCH_PODS and
# BENCH_NODE_FLAGS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
unset NODE_EXTRA_CA_CERTS
exec node dist/bench/memory "$@"
