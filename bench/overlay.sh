#!/usr/bin/env bash
# Benchmark berth's VXLAN overlay (bench/overlay.ts): iperf3 throughput against the underlay and
# a hand-built flannel-style VXLAN, convergence with 20 nodes, berth-overlayd memory after 10 min.
# `bench/overlay.sh throughput` or `bench/overlay.sh convergence` runs one part;
# BENCH_OVERLAY_SOAK_MINUTES=0 skips the 10-minute wait.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
exec node dist/bench/overlay "$@"
