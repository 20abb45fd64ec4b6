#!/usr/bin/env bash
# berth-cri's steady-state cost under kubelet's polling, against containerd's CRI (see bench/steady.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
unset NODE_EXTRA_CA_CERTS
exec node dist/bench/steady "$@"
