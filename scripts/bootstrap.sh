#!/usr/bin/env bash
# Bring a Debian 12 machine (as root) to the point where berth builds, runs and tests:
# the Debian packages berth uses, npm ci, and the build. Idempotent, and quick when
# everything is already there (it only installs what is missing and rebuilds what changed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the kernel-facing tools berth drives, the reference CNI plugins (peers for
# tests and benchmarks), containerd and runc (berth-cri's runtime) with a local registry for
# the test images, the toolchain node-gyp needs for the native addon (and the static pause
# binary), protoc with the well-known types (the test that proto/gen matches proto/; Debian
# ships google/protobuf/*.proto in libprotobuf-dev, only a Recommends of protoc), and mkfs for XFS and ext4 (the
# loop device and project quota tests), etcd (the overlay's lease store), iperf3 (the overlay
# benchmark and berth-bandwidth's measured rates), kubectl (kubernetes-client: the client-side check of share/manifests), and
# mmdebstrap and systemd-container (systemd-nspawn) for the booted systemd node of the e2e tests
# (world/node-box.ts): PID 1 here is not systemd, so berth's units are proven in a container.
packages=(
  iproute2 iptables nftables iputils-ping util-linux procps kmod
  xfsprogs e2fsprogs
  containernetworking-plugins
  containerd runc crun docker-registry apache2-utils
  python3 make g++ libc6-dev openssl
  protobuf-compiler libprotobuf-dev
  etcd-server iperf3
  mmdebstrap systemd-container
)
# kubectl only when no kubectl is there: a machine may have one from another package (which
# Debian's kubernetes-client would conflict with).
command -v kubectl >/dev/null || packages+=(kubernetes-client)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "run me as root (berth manages network namespaces, links and firewall rules)"
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The debian-packaged service of docker-registry is not ours: tests start their own registries.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# Test images are built from Debian's dynamic busybox, which conflicts with busybox-static as an
# installed package: fetch the .deb only (world/images.ts unpacks it).
if ! ls .cache/debs/busybox_*.deb >/dev/null 2>&1; then
  mkdir -p .cache/debs
  log "downloading the busybox package for the test images"
  (cd .cache/debs && { apt-get download busybox >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox >/dev/null; }; })
fi

# The machine's own Node (Debian 12's 18, or whatever is installed) only runs npm ci: npm ci
# installs berth's pinned runtime (node-linux-<arch>), and everything after it runs on that. With
# no node/npm at all, Debian's nodejs and npm are installed for that one job.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  log "no node/npm on this machine: installing Debian's nodejs and npm to run npm ci"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# npm ci only when the lock file changed since the last install. No dependency compiles during
# it (netlink ships a N-API prebuild; the native addon is built below by build.mjs against the
# pinned runtime's own headers), so nothing here needs Node headers or the network beyond the
# registry.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ ! -x node_modules/.bin/node ]; then
  log "npm ci (with $(node --version 2>/dev/null), the machine's Node)"
  npm ci --no-audit --no-fund --loglevel=error
fi

. scripts/pinned-node.sh
use_pinned_node

log "build (Node $(node --version))"
node scripts/build.mjs
