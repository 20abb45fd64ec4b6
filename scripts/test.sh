#!/usr/bin/env bash
# The test command (README, .ci/run): bootstrap the machine, typecheck and lint, run every test
# (unit, then integration in real network namespaces), and end with one line
# "N passed, N failed[, N skipped]". Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh || { echo "bootstrap failed"; echo "0 passed, 1 failed"; exit 1; }
# Everything below runs on the pinned Node 24 (npx, vitest, and the processes tests spawn).
. scripts/pinned-node.sh
use_pinned_node || { echo "0 passed, 1 failed"; exit 1; }

checks_failed=0
echo "== typecheck"
npx --no-install tsc --noEmit || checks_failed=$((checks_failed + 1))
echo "== lint"
npx --no-install eslint . || checks_failed=$((checks_failed + 1))

# CNI plugins are spawned per test: a CA bundle in NODE_EXTRA_CA_CERTS costs ~50 ms per start.
unset NODE_EXTRA_CA_CERTS
mkdir -p .test-results
rm -f .test-results/vitest.json
echo "== tests"
npx --no-install vitest run --reporter=default --reporter=json --outputFile=.test-results/vitest.json "$@"
node scripts/summarize-tests.mjs .test-results/vitest.json "$checks_failed"
