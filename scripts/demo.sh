#!/usr/bin/env bash
# The main job (README): bootstrap the machine, then run the berth demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. scripts/pinned-node.sh
use_pinned_node
unset NODE_EXTRA_CA_CERTS
exec node dist/demo/berth-demo "$@"
